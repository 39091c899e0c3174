"""A double-clicked "Start" makes one job; a failed or cancelled job is retried in place."""

import re
import threading
import uuid

import pytest
from django.db import connection, transaction
from django.urls import reverse

import worker.tasks  # noqa: F401 (job_start imports it; loaded before the timed race below)
from feedback.jobs import job_start
from feedback.models import Job, ProjectMember
from tests.factories import JudgeFactory, MemberFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db

GENERATE = {
    "models": "tiny = /models/tiny-İstanbul",
    "backend": "transformers",
    "n": 2,
    "temperature": 0.8,
    "top_p": 0.95,
    "max_new_tokens": 16,
    "seed": 1,
    "batch_size": 2,
}


@pytest.fixture
def admin_client(client, project, settings):
    settings.LOCAL_MODEL_DIRS = ["/models"]
    admin = UserFactory(username="boss")
    MemberFactory(project=project, user=admin, role=ProjectMember.Role.ADMIN)
    client.force_login(admin)
    PromptFactory(project=project)
    return client


def start_key(page, action: str) -> str:
    form = re.search(rf'<form[^>]*action="{re.escape(action)}".*?</form>', page, re.S).group(0)
    match = re.search(r'name="start_key" value="([0-9a-f-]{36})"', form)
    assert match, "the start form carries no key"
    return match.group(1)


def test_a_double_clicked_start_makes_one_generation_job(admin_client, project):
    action = reverse("annotate:job-generate", args=[project.pk])
    key = start_key(
        admin_client.get(reverse("annotate:project-jobs", args=[project.pk])).content.decode(),
        action,
    )

    first = admin_client.post(action, {**GENERATE, "start_key": key})
    second = admin_client.post(action, {**GENERATE, "start_key": key})

    assert (first.status_code, second.status_code) == (302, 302)
    assert Job.objects.filter(project=project).count() == 1


def test_a_double_clicked_judge_start_makes_one_job(admin_client, project):
    judge = JudgeFactory()
    action = reverse("annotate:job-judge", args=[project.pk])
    key = start_key(
        admin_client.get(reverse("annotate:project-jobs", args=[project.pk])).content.decode(),
        action,
    )
    for _ in range(2):
        admin_client.post(action, {"judge": judge.pk, "kinds": ["pairwise"], "start_key": key})
    assert Job.objects.filter(project=project, kind="judge").count() == 1


def test_each_render_of_the_jobs_page_gives_a_new_key(admin_client, project):
    url = reverse("annotate:project-jobs", args=[project.pk])
    action = reverse("annotate:job-generate", args=[project.pk])
    first = start_key(admin_client.get(url).content.decode(), action)
    second = start_key(admin_client.get(url).content.decode(), action)
    assert first != second
    admin_client.post(action, {**GENERATE, "start_key": first})
    admin_client.post(action, {**GENERATE, "start_key": second})
    assert Job.objects.filter(project=project).count() == 2


def test_start_buttons_are_disabled_while_the_form_is_sent(admin_client, project):
    page = admin_client.get(reverse("annotate:project-jobs", args=[project.pk])).content.decode()
    forms = re.findall(r"<form[^>]*>", page)
    starts = [f for f in forms if "/jobs/generate/" in f or "/jobs/judge/" in f]
    assert len(starts) == 2
    assert all("hx-disabled-elt=" in f for f in starts)


def test_a_failed_job_is_retried_in_place(admin_client, project):
    action = reverse("annotate:job-generate", args=[project.pk])
    admin_client.post(action, GENERATE)
    job = Job.objects.get()
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED, error="CUDA out of memory")
    page = admin_client.get(reverse("annotate:project-jobs", args=[project.pk])).content.decode()
    assert reverse("annotate:job-retry", args=[job.pk]) in page

    response = admin_client.post(reverse("annotate:job-retry", args=[job.pk]))

    assert response.status_code == 302
    job.refresh_from_db()
    assert (job.status, job.error) == (Job.Status.QUEUED, "")
    assert Job.objects.count() == 1


def test_a_succeeded_job_is_not_retried(admin_client, project):
    admin_client.post(reverse("annotate:job-generate", args=[project.pk]), GENERATE)
    job = Job.objects.get()
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    admin_client.post(reverse("annotate:job-retry", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_two_starts_with_one_key_at_the_same_moment_make_one_job(project):
    """The second request's insert waits on the unique index for the first's commit, then
    returns the first's job instead of a second one."""
    judge = JudgeFactory(name="judge-İ", model_name="org/tiny")
    key = uuid.uuid4()
    params = {"judge_id": judge.pk, "kinds": ["pairwise"]}
    started = threading.Event()
    first: list[Job] = []

    def start_and_hold() -> None:
        try:
            with transaction.atomic():
                first.append(
                    job_start(project=project, kind=Job.Kind.JUDGE, params=params, start_key=key)
                )
                started.set()
                threading.Event().wait(0.5)  # the second request arrives meanwhile
        finally:
            connection.close()

    thread = threading.Thread(target=start_and_hold)
    thread.start()
    assert started.wait(10)
    second = job_start(project=project, kind=Job.Kind.JUDGE, params=params, start_key=key)
    thread.join()

    assert second.pk == first[0].pk
    assert Job.objects.filter(project=project).count() == 1
