"""Without a broker (the demo), a job started from the jobs page runs in a thread beside
the request: the page answers while the job runs, and the job's row shows its progress
and, once done, how long it took."""

import threading
import time

import pytest
from django.urls import reverse

import worker.tasks
from feedback.jobs import job_progress
from feedback.models import Job, ProjectMember
from tests.factories import MemberFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_job_started_from_the_page_runs_beside_the_request(
    client, project, settings, monkeypatch
):
    settings.JOBS_IN_THREAD = True
    settings.LOCAL_MODEL_DIRS = ["/models"]
    PromptFactory(project=project)
    admin = UserFactory(username="boss")
    MemberFactory(project=project, user=admin, role=ProjectMember.Role.ADMIN)
    client.force_login(admin)
    release = threading.Event()
    ran_in: list[str] = []

    def slow_generation(job, params) -> None:
        ran_in.append(threading.current_thread().name)
        job_progress(job=job, done=0, total=2)
        job_progress(job=job, done=1)
        assert release.wait(10)

    monkeypatch.setattr(worker.tasks, "generation_run", slow_generation)

    response = client.post(
        reverse("annotate:job-generate", args=[project.pk]),
        {
            "models": "smol = /models/smol.gguf",
            "backend": "transformers",
            "n": 1,
            "temperature": 0.7,
            "top_p": 1,
            "max_new_tokens": 8,
            "seed": 0,
            "batch_size": 1,
        },
    )

    assert response.status_code == 302  # answered while the job still runs
    job = Job.objects.get()
    wait_for(lambda: Job.objects.filter(pk=job.pk, done=1).exists())
    page = client.get(reverse("annotate:job-progress", args=[job.pk]))
    assert b"1 / 2" in page.content and b"running for" in page.content
    time.sleep(1.1)
    release.set()
    wait_for(lambda: Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED)
    job.refresh_from_db()
    assert ran_in == ["prefhub-jobs"]
    assert job.elapsed.total_seconds() >= 1
    page = client.get(reverse("annotate:job-progress", args=[job.pk]))
    assert b"took 1." in page.content
