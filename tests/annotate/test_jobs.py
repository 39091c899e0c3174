"""Admins start jobs from the project and watch their progress; judge quality page and API."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from feedback.jobs import JudgeOutputInput, judge_result_save
from feedback.models import Job, JudgeOutput, ProjectMember
from feedback.services import FeedbackInput, PairwiseInput, submission_create
from tests.factories import JudgeFactory, MemberFactory, PromptFactory, UserFactory
from tests.worker.test_judge_job import task_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, project):
    admin = UserFactory(username="boss")
    MemberFactory(project=project, user=admin, role=ProjectMember.Role.ADMIN)
    client.force_login(admin)
    return client


def test_admin_starts_a_generation_job_from_the_jobs_page(admin_client, project, settings):
    settings.LOCAL_MODEL_DIRS = ["/models"]
    PromptFactory(project=project)
    page = admin_client.get(reverse("annotate:project-jobs", args=[project.pk]))
    assert b"Generate candidates" in page.content

    response = admin_client.post(
        reverse("annotate:job-generate", args=[project.pk]),
        {
            "models": "smol = /models/smollm2.gguf\nQwen/Qwen2.5-0.5B-Instruct",
            "backend": "transformers",
            "n": 4,
            "temperature": 0.8,
            "top_p": 0.95,
            "max_new_tokens": 128,
            "seed": 3,
            "batch_size": 8,
        },
    )

    assert response.status_code == 302
    job = Job.objects.get()
    assert (job.kind, job.status, job.created_by.username) == ("generate", "queued", "boss")
    assert [(m["name"], m["path"]) for m in job.params["models"]] == [
        ("smol", "/models/smollm2.gguf"),
        ("Qwen/Qwen2.5-0.5B-Instruct", ""),
    ]
    assert job.params["n"] == 4 and job.params["seed"] == 3


def test_refused_job_parameters_are_shown_on_the_form(admin_client, project):
    response = admin_client.post(
        reverse("annotate:job-generate", args=[project.pk]),
        {
            "models": "served",
            "backend": "openai",
            "n": 1,
            "temperature": 0,
            "top_p": 1,
            "max_new_tokens": 8,
            "seed": 0,
            "batch_size": 1,
        },
    )
    assert response.status_code == 200
    assert b"the openai backend needs an endpoint" in response.content
    assert not Job.objects.exists()


def test_greedy_sampling_with_several_answers_is_refused_on_the_form(admin_client, project):
    response = admin_client.post(
        reverse("annotate:job-generate", args=[project.pk]),
        {
            "models": "smol = /models/smollm2.gguf",
            "backend": "transformers",
            "n": 4,
            "temperature": 0,
            "top_p": 1,
            "max_new_tokens": 8,
            "seed": 0,
            "batch_size": 1,
        },
    )
    assert response.status_code == 200
    assert b"with temperature 0 every sample is the same" in response.content
    assert not Job.objects.exists()


def test_samples_a_generation_job_skipped_are_listed_with_their_reason(admin_client, project):
    prompt = PromptFactory(project=project)
    Job.objects.create(
        project=project,
        kind=Job.Kind.GENERATE,
        status=Job.Status.SUCCEEDED,
        skipped=[
            {
                "prompt_id": prompt.pk,
                "model": "smol",
                "sample_index": 0,
                "reason": "HTTP 400: <script>alert(1)</script> maximum context length",
            }
        ],
    )
    page = admin_client.get(reverse("annotate:project-jobs", args=[project.pk]))
    assert b"1 sample not stored" in page.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt; maximum context length" in page.content
    assert b"<script>alert(1)" not in page.content


def test_admin_starts_a_judge_job(admin_client, project):
    judge = JudgeFactory()
    response = admin_client.post(
        reverse("annotate:job-judge", args=[project.pk]),
        {"judge": judge.pk, "kinds": ["pairwise", "rating"]},
    )
    assert response.status_code == 302
    assert Job.objects.get().params == {
        "judge_id": judge.pk,
        "kinds": ["pairwise", "rating"],
        "task_ids": None,
    }


def test_an_annotator_cannot_start_jobs(client, project, annotator):
    client.force_login(annotator)
    assert client.get(reverse("annotate:project-jobs", args=[project.pk])).status_code == 403


def test_a_running_job_polls_its_progress_and_a_finished_one_stops(admin_client, project):
    job = Job.objects.create(project=project, kind="generate", status="running", done=3, total=4)
    url = reverse("annotate:job-progress", args=[job.pk])

    running = admin_client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger="every 1s"' in running and 'value="75"' in running

    Job.objects.filter(pk=job.pk).update(status="failed", error="OSError: no <model> here")
    failed = admin_client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in failed
    assert "OSError: no &lt;model&gt; here" in failed


def test_a_judge_jobs_unparseable_outputs_are_shown(admin_client, project):
    task = task_of(project, "pair", "Lyon.", "Paris.")
    job = Job.objects.create(project=project, kind="judge", status="succeeded")
    judge_result_save(
        job=job,
        judge=JudgeFactory(),
        task=task,
        outputs=[JudgeOutputInput("pairwise", False, "<b>beats me</b>", None, "no verdict")],
        feedback=None,
    )
    html = admin_client.get(reverse("annotate:job-progress", args=[job.pk])).content.decode()
    assert "1 judge output not fully understood" in html
    assert "&lt;b&gt;beats me&lt;/b&gt;" in html


def test_cancel_stops_a_queued_job(admin_client, project):
    job = Job.objects.create(project=project, kind="generate")
    admin_client.post(reverse("annotate:job-cancel", args=[job.pk]), headers={"HX-Request": "true"})
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_judge_quality_is_on_a_page_and_in_the_api(admin_client, project, annotator):
    judge = JudgeFactory(name="gpt-judge")
    job = Job.objects.create(project=project, kind="judge", status="succeeded")
    for human, said, swapped_said in [("A", "A", "B"), ("B", "A", "A"), ("B", "B", "A")]:
        task = task_of(project, "pair", "Lyon.", "Paris is the capital.")
        submission_create(
            task=task, annotator=annotator, feedback=FeedbackInput(pairwise=PairwiseInput(human))
        )
        JudgeOutput.objects.create(
            job=job, task=task, judge=judge, kind="pairwise", parsed={"choice": said}
        )
        JudgeOutput.objects.create(
            job=job,
            task=task,
            judge=judge,
            kind="pairwise",
            swapped=True,
            parsed={"choice": swapped_said},
        )
        submission_create(
            task=task, judge=judge, job=job, feedback=FeedbackInput(pairwise=PairwiseInput(said))
        )

    page = admin_client.get(reverse("annotate:judge-quality", args=[project.pk]))
    assert b"gpt-judge" in page.content and b"Position consistency" in page.content

    api = admin_client.get(reverse("api:judge-quality", args=[project.pk]))
    (report,) = json.loads(api.content)["judges"]
    assert report["pairwise"]["n"] == 3
    assert report["pairwise"]["raw"] == pytest.approx(2 / 3)
    assert report["position_consistency"] == pytest.approx(2 / 3)
    assert report["length_bias"]["n"] == 3


def test_judge_quality_api_hides_projects_of_others(client, project, outsider):
    client.force_login(outsider)
    assert client.get(reverse("api:judge-quality", args=[project.pk])).status_code == 404


def test_a_job_whose_worker_went_silent_is_shown_stalled_and_can_be_requeued(admin_client, project):
    lost = timezone.now() - timedelta(hours=3)
    job = Job.objects.create(
        project=project, kind="judge", status="running", done=2, total=9, heartbeat_at=lost
    )
    page = admin_client.get(reverse("annotate:project-jobs", args=[project.pk])).content.decode()
    assert "Stalled: worker lost" in page and "Re-queue" in page

    html = admin_client.post(
        reverse("annotate:job-retry", args=[job.pk]), headers={"HX-Request": "true"}
    ).content.decode()

    job.refresh_from_db()
    assert job.status == "queued" and "Stalled" not in html and "Queued" in html


def test_a_job_with_a_recent_heartbeat_is_running_not_stalled(admin_client, project):
    job = Job.objects.create(
        project=project, kind="judge", status="running", heartbeat_at=timezone.now()
    )
    page = admin_client.get(reverse("annotate:project-jobs", args=[project.pk])).content.decode()
    assert "Stalled" not in page and "Re-queue" not in page
    admin_client.post(reverse("annotate:job-retry", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == "running"
