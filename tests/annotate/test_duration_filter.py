"""How long a job took, as the pages say it: seconds under a minute (Django's timesince
said a 41-second job "took 0 minutes")."""

from datetime import timedelta

import pytest

from annotate.templatetags.annotate_tags import duration


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (timedelta(seconds=0.42), "0.4 s"),
        (timedelta(seconds=9.96), "10.0 s"),
        (timedelta(seconds=41.3), "41 s"),
        (timedelta(seconds=59.6), "1 min"),
        (timedelta(minutes=2, seconds=5), "2 min 5 s"),
        (timedelta(hours=3, minutes=12, seconds=40), "3 h 12 min"),
        (timedelta(hours=2), "2 h"),
        (95.0, "1 min 35 s"),
        (None, ""),
    ],
)
def test_durations_read_in_seconds_minutes_or_hours(value, shown):
    assert duration(value) == shown
