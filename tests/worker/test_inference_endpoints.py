"""Where jobs get text from is the operator's choice: registered endpoints, allowed model
directories. A project admin or a judge row can name an endpoint, never a URL or a key.

The server is the fake vLLM of tests/worker/ml/test_openai_backend.py, on 127.0.0.1.
"""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from feedback.jobs import ModelSpec, job_claim, job_params, job_start
from feedback.models import Job, Judge, ProjectMember, Response
from feedback.services import FeedbackError
from tests.factories import MemberFactory, PromptFactory, UserFactory
from tests.worker.ml.test_openai_backend import FakeVLLM
from tests.worker.test_judge_job import task_of
from worker.backends import generator_load
from worker.ml.openai_backend import PermanentBackendError
from worker.runs import generation_run, judging_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def registry(settings, server_url, monkeypatch):
    """One registered endpoint, "vllm", whose key the operator keeps in PREFHUB_TEST_KEY."""
    FakeVLLM.requests.clear()
    monkeypatch.setenv("PREFHUB_TEST_KEY", "operator-key")
    monkeypatch.setenv("DATABASE_URL", "postgres://user:db-password@db/prefhub")
    settings.INFERENCE_ENDPOINTS = {
        "vllm": {"base_url": server_url, "api_key_env": "PREFHUB_TEST_KEY"}
    }
    return settings.INFERENCE_ENDPOINTS


@pytest.fixture
def admin_client(client, project):
    """A project admin without staff rights."""
    admin = UserFactory(username="boss", is_staff=False)
    MemberFactory(project=project, user=admin, role=ProjectMember.Role.ADMIN)
    client.force_login(admin)
    return client


def generate_form(**fields):
    return {
        "models": "served = Qwen/Qwen2.5-0.5B-Instruct",
        "backend": "openai",
        "n": 1,
        "temperature": 0.5,
        "top_p": 1,
        "max_new_tokens": 3,
        "seed": 0,
        "batch_size": 1,
        **fields,
    }


def test_a_project_admin_cannot_send_a_job_to_a_url_of_their_choosing(
    admin_client, project, registry, server_url
):
    PromptFactory(project=project)
    response = admin_client.post(
        reverse("annotate:job-generate", args=[project.pk]),
        generate_form(base_url=server_url, endpoint="http://169.254.169.254/latest/meta-data"),
    )
    assert response.status_code == 200
    errors = response.context["generate_form"].errors
    assert "endpoint" in errors
    assert "Allowed: vllm." in errors["endpoint"][0]
    assert not Job.objects.exists()
    assert FakeVLLM.requests == []


def test_job_parameters_cannot_carry_a_url_or_a_key_variable(project, registry, server_url):
    model = {
        "name": "served",
        "backend": "openai",
        "endpoint": "elsewhere",
        "base_url": server_url,
        "api_key_env": "DATABASE_URL",
    }
    with pytest.raises(FeedbackError) as refused:
        job_start(project=project, kind=Job.Kind.GENERATE, params={"models": [model]})
    errors = refused.value.errors
    assert set(errors) >= {"models.0.base_url", "models.0.api_key_env", "models.0.endpoint"}
    assert errors["models.0.endpoint"] == ["Unknown inference endpoint 'elsewhere'. Allowed: vllm."]
    assert not Job.objects.exists()


def test_a_registered_endpoint_gets_the_key_the_operator_named(admin_client, project, registry):
    PromptFactory(project=project, text="İstanbul 🌉 <script>alert(1)</script>")
    response = admin_client.post(
        reverse("annotate:job-generate", args=[project.pk]), generate_form(endpoint="vllm")
    )
    assert response.status_code == 302
    job = job_claim(job_id=Job.objects.get().pk)
    assert job.params["models"][0]["endpoint"] == "vllm"

    generation_run(job, job_params(job))

    (sent,) = FakeVLLM.requests
    assert sent["auth"] == "Bearer operator-key"
    assert sent["model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert Response.objects.get(job=job).text.startswith("İstanbul")


def test_a_judge_cannot_name_its_own_key_variable(project, registry):
    judge = Judge.objects.create(
        name="remote",
        backend="openai",
        model_name="judge-model",
        endpoint="vllm",
        parameters={"api_key_env": "DATABASE_URL", "max_new_tokens": 4},
    )
    with pytest.raises(ValidationError) as refused:
        judge.full_clean()
    assert set(refused.value.message_dict) == {"parameters"}

    task_of(project, "pair", "Lyon.", "Paris.")
    job = job_claim(
        job_id=job_start(
            project=project,
            kind=Job.Kind.JUDGE,
            params={"judge_id": judge.pk, "kinds": ["pairwise"]},
        ).pk
    )
    judging_run(job, job_params(job))
    assert {r["auth"] for r in FakeVLLM.requests} == {"Bearer operator-key"}


def test_a_judge_whose_endpoint_is_not_registered_cannot_be_started(
    admin_client, project, registry
):
    judge = Judge.objects.create(
        name="old", backend="openai", model_name="m", endpoint="unregistered-evil.example"
    )
    with pytest.raises(ValidationError) as refused:
        judge.full_clean()
    assert "Allowed: vllm." in refused.value.message_dict["endpoint"][0]

    response = admin_client.post(
        reverse("annotate:job-judge", args=[project.pk]), {"judge": judge.pk, "kinds": ["pairwise"]}
    )
    assert response.status_code == 200
    assert "Unknown inference endpoint" in response.content.decode()
    assert not Job.objects.exists()


def test_a_worker_refuses_an_endpoint_its_registry_does_not_know(registry):
    spec = ModelSpec.model_construct(name="m", backend="openai", path="", endpoint="gone")
    with pytest.raises(ValueError, match="Allowed: vllm"):
        generator_load(spec)


def test_a_backend_error_shows_the_status_line_not_the_servers_answer(project, registry):
    PromptFactory(project=project)
    job = job_claim(
        job_id=job_start(
            project=project,
            kind=Job.Kind.GENERATE,
            params={"models": [{"name": "status-401", "backend": "openai", "endpoint": "vllm"}]},
        ).pk
    )
    with pytest.raises(PermanentBackendError) as failed:
        generation_run(job, job_params(job))
    assert str(failed.value) == "HTTP 401 Unauthorized"  # the body said {"error": "nope"}


@pytest.fixture
def model_dirs(settings, tmp_path):
    """An allowed model directory with a model in it, and a model outside it."""
    allowed, outside = tmp_path / "models", tmp_path / "private"
    (allowed / "good").mkdir(parents=True)
    (outside / "secret").mkdir(parents=True)
    (allowed / "link").symlink_to(outside / "secret")
    settings.LOCAL_MODEL_DIRS = [str(allowed)]
    return allowed, outside


def generate(project, path: str) -> Job:
    return job_start(
        project=project, kind=Job.Kind.GENERATE, params={"models": [{"name": "m", "path": path}]}
    )


@pytest.mark.parametrize(
    "where",
    ["{outside}/secret", "{allowed}/../private/secret", "{allowed}/link", "/etc/passwd.gguf"],
    ids=["outside", "dot-dot", "symlink", "gguf-elsewhere"],
)
def test_a_local_model_outside_the_allowed_directories_is_refused(project, model_dirs, where):
    allowed, outside = model_dirs
    with pytest.raises(FeedbackError) as refused:
        generate(project, where.format(allowed=allowed, outside=outside))
    assert "not in an allowed model directory" in refused.value.errors["models.0.path"][0]
    assert not Job.objects.exists()


def test_a_local_model_inside_an_allowed_directory_or_a_hub_name_is_accepted(project, model_dirs):
    allowed, _ = model_dirs
    assert generate(project, str(allowed / "good")).params["models"][0]["path"].endswith("good")
    assert generate(project, "HuggingFaceTB/SmolLM2-135M-Instruct")


def test_a_judge_with_a_local_model_elsewhere_is_refused(project, model_dirs):
    _, outside = model_dirs
    judge = Judge.objects.create(name="local", model_name=str(outside / "secret"))
    with pytest.raises(ValidationError):
        judge.full_clean()
    with pytest.raises(FeedbackError) as refused:
        job_start(
            project=project, kind=Job.Kind.JUDGE, params={"judge_id": judge.pk, "kinds": ["rating"]}
        )
    assert "not in an allowed model directory" in refused.value.errors["judge_id"][0]


def test_a_worker_refuses_a_local_model_outside_the_allowed_directories(model_dirs):
    allowed, _ = model_dirs
    spec = ModelSpec.model_construct(name="m", backend="transformers", path=f"{allowed}/link")
    with pytest.raises(PermissionError):
        generator_load(spec)
