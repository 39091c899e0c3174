import gc

from config.runtime import GC_THRESHOLDS


def test_loading_the_settings_tunes_the_garbage_collector():
    # pytest-django loaded the settings, as gunicorn, Celery and manage.py do.
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # CPython's default ran during every few export rows
