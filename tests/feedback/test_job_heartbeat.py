"""A running job's worker writes heartbeats; a job whose heartbeat stopped is stalled."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.jobs import job_claim, job_heartbeats, job_progress, job_retry
from feedback.models import Job


def test_claim_and_progress_write_the_heartbeat(project):
    job = Job.objects.create(project=project, kind="generate")
    claimed = job_claim(job_id=job.pk)
    assert claimed.heartbeat_at is not None
    old = timezone.now() - timedelta(hours=2)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=old)

    job_progress(job=claimed, done=1, total=4)

    claimed.refresh_from_db()
    assert claimed.heartbeat_at > old and not claimed.is_stalled


@pytest.mark.django_db(transaction=True)
def test_a_job_body_silent_for_longer_than_the_interval_still_beats(project):
    job = Job.objects.create(project=project, kind="judge", status="running")
    with job_heartbeats(job_id=job.pk, every=0.1):
        time.sleep(0.5)  # a slow model call: no progress written
    job.refresh_from_db()
    assert job.heartbeat_at is not None
    assert timezone.now() - job.heartbeat_at < timedelta(seconds=5)


def test_a_running_job_without_heartbeat_for_minutes_is_stalled(project, settings):
    settings.JOB_STALLED_MINUTES = 5
    now = timezone.now()
    running = Job(project=project, kind="judge", status="running", heartbeat_at=now)
    silent = Job(
        project=project, kind="judge", status="running", heartbeat_at=now - timedelta(minutes=6)
    )
    finished = Job(
        project=project, kind="judge", status="succeeded", heartbeat_at=now - timedelta(days=1)
    )
    assert (running.is_stalled, silent.is_stalled, finished.is_stalled) == (False, True, False)


def test_only_a_stalled_job_is_requeued(project, django_capture_on_commit_callbacks):
    now = timezone.now()
    alive = Job.objects.create(project=project, kind="judge", status="running", heartbeat_at=now)
    lost = Job.objects.create(
        project=project, kind="judge", status="running", heartbeat_at=now - timedelta(hours=3)
    )
    with django_capture_on_commit_callbacks() as enqueued:
        assert job_retry(job=alive) is False
        assert job_retry(job=lost) is True
    alive.refresh_from_db()
    lost.refresh_from_db()
    assert alive.status == "running"
    assert lost.status == "queued"
    assert len(enqueued) == 1
