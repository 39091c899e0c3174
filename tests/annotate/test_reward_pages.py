"""The reward-model pages: list and train form, a model's evaluation with plots and their
numbers, activate and delete, and best-of-N with untrusted text escaped. Admins only."""

import re

import pytest
from django.urls import reverse

from feedback.models import Job, ProjectMember, RewardModel
from feedback.rewards import scores_save
from tests.factories import (
    SYSTEM_TURN,
    MemberFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    RewardModelFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>"


@pytest.fixture
def admin(project):
    user = UserFactory(username="boss")
    MemberFactory(project=project, user=user, role=ProjectMember.Role.ADMIN)
    return user


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


def page(name: str, project, model=None) -> str:
    args = [project.pk] if model is None else [project.pk, model.pk]
    return reverse(f"annotate:{name}", args=args)


def test_only_admins_open_the_reward_model_pages(client, project, annotator, outsider):
    model = RewardModelFactory(project=project)
    viewer = UserFactory(username="viewer")
    MemberFactory(project=project, user=viewer, role=ProjectMember.Role.VIEWER)
    for user, status in ((annotator, 403), (viewer, 403), (outsider, 404)):
        client.force_login(user)
        for url in (page("reward-models", project), page("reward-model", project, model)):
            assert client.get(url).status_code == status
        assert client.get(page("best-of-n", project)).status_code == status
        assert client.post(page("reward-model-train", project), {}).status_code == status
        assert client.post(page("reward-model-activate", project, model)).status_code == status
        assert client.post(page("reward-model-delete", project, model)).status_code == status
    assert not RewardModel.objects.get().is_active


def test_the_list_shows_key_metrics_and_the_jobs_page_links_to_it(admin_client, project):
    RewardModelFactory(project=project, name=f"rm {HOSTILE}", is_active=True)
    job = Job.objects.create(project=project, kind=Job.Kind.TRAIN_REWARD, done=3, total=12)
    body = admin_client.get(page("reward-models", project)).content.decode()
    assert f'id="job-{job.pk}"' in body and "Train a reward model" in body  # polled progress
    assert reverse("annotate:job-progress", args=[job.pk]) in body
    assert "0.750" in body and "active" in body  # held-out accuracy
    assert "&lt;script&gt;" in body and "<script>alert" not in body
    assert 'name="backbone"' in body and 'name="learning_rate"' in body
    jobs = admin_client.get(reverse("annotate:project-jobs", args=[project.pk])).content.decode()
    assert page("reward-models", project) in jobs


def train_form(backbone: str, **changes) -> dict:
    form = {
        "name": "first",
        "backbone": backbone,
        "backbone_kind": "embedding",
        "pairs": "on",
        "margin": "on",
        "sources": "all",
        "aggregate": "none",
        "min_agreement": 0,
        "use_margin": "on",
        "center_rewards_coefficient": 0.01,
        "span_penalty": 0,
        "judge_weight": 0.5,
        "batch_size": 8,
        "gradient_accumulation_steps": 1,
        "learning_rate": 0.001,
        "warmup_ratio": 0,
        "max_epochs": 2,
        "max_length": 128,
        "held_out_share": 0.2,
        "eval_steps": 0,
        "patience": 1,
        "early_stopping_metric": "loss",
        "seed": 7,
        "heads": 1,
    }
    return form | changes


def test_the_training_form_starts_a_job_or_shows_what_is_wrong(
    admin_client, project, settings, tmp_path
):
    settings.LOCAL_MODEL_DIRS = [str(tmp_path)]
    backbone = str(tmp_path / "encoder")
    refused = admin_client.post(page("reward-model-train", project), train_form("/etc/passwd"))
    assert refused.status_code == 200
    assert "not in an allowed model directory" in refused.content.decode()
    refused = admin_client.post(
        page("reward-model-train", project), train_form(backbone, spans="on")
    )
    assert "span feedback needs training.span_penalty above 0" in refused.content.decode()
    assert not Job.objects.exists()

    started = admin_client.post(page("reward-model-train", project), train_form(backbone))
    assert started.status_code == 302
    job = Job.objects.get()
    assert job.kind == Job.Kind.TRAIN_REWARD and job.params["name"] == "first"
    assert job.params["data"] == {
        "pairs": True,
        "rankings": False,
        "ratings": False,
        "aspect": "",
        "spans": False,
        "margin": True,
        "sources": "all",
        "aggregate": "none",
        "min_agreement": 0.0,
    }
    assert job.params["training"]["judge_weight"] == 0.5 and job.params["training"]["seed"] == 7


def test_the_model_page_shows_plots_with_their_numbers(admin_client, project):
    model = RewardModelFactory(project=project)
    prompt = PromptFactory(project=project)
    for length, score in ((5, 0.1), (50, 0.7), (500, 2.0)):
        response = ResponseFactory(prompt=prompt, text="x" * length)
        scores_save(reward_model_id=model.pk, scores=[(response.pk, score)])
    body = admin_client.get(page("reward-model", project, model)).content.decode()
    charts = re.findall(r'<img class="chart" src="data:image/svg\+xml;base64,', body)
    assert len(charts) == 3  # learning curve, reliability, reward against length
    assert "0.6500" in body  # the curve's held-out loss, in its table
    assert "0.550" in body  # the reliability bin's mean prediction
    assert "judge-&lt;b&gt;x&lt;/b&gt;" in body  # agreement with each judge, escaped
    assert "<td>0.67</td><td>0.500</td><td>2</td>" in body  # accuracy per agreement level
    assert "<td>500 to 500</td><td>1</td><td>2.000</td>" in body  # reward by length group


def test_activating_and_deleting_from_the_page(admin_client, project, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    first, second = RewardModelFactory(project=project), RewardModelFactory(project=project)
    second.artifact_dir.mkdir(parents=True)
    admin_client.post(page("reward-model-activate", project, first))
    assert RewardModel.objects.get(is_active=True) == first
    response = admin_client.post(page("reward-model-delete", project, second))
    assert response.status_code == 302
    assert list(RewardModel.objects.all()) == [first]


def test_evaluation_is_offered_on_the_projects_the_admin_administers(admin_client, admin, project):
    model = RewardModelFactory(project=project)
    mine, theirs = ProjectFactory(name="Mine"), ProjectFactory(name="Theirs")
    MemberFactory(project=mine, user=admin, role=ProjectMember.Role.ADMIN)
    body = admin_client.get(page("reward-model", project, model)).content.decode()
    assert ">Mine</option>" in body and "Theirs" not in body
    refused = admin_client.post(
        page("reward-model-evaluate", project, model), {"project": theirs.pk}
    )
    assert refused.status_code == 200 and not Job.objects.exists()
    admin_client.post(page("reward-model-evaluate", project, model), {"project": mine.pk})
    job = Job.objects.get()
    assert (job.kind, job.project, job.params["reward_model_id"]) == (
        "evaluate_reward",
        mine,
        model.pk,
    )


def test_best_of_n_ranks_candidates_by_the_active_model_and_escapes_them(admin_client, project):
    prompt = PromptFactory(
        project=project,
        text="",
        messages=[SYSTEM_TURN, {"role": "user", "content": f"Which? {HOSTILE}"}],
    )
    low = ResponseFactory(prompt=prompt, text=f"low {HOSTILE}")
    high = ResponseFactory(prompt=prompt, text="high **answer**")
    unscored = ResponseFactory(prompt=prompt, text="not scored yet")
    body = admin_client.get(page("best-of-n", project)).content.decode()
    assert "no active reward model" in body

    model = RewardModelFactory(project=project, is_active=True)
    scores_save(reward_model_id=model.pk, scores=[(low.pk, -1.0), (high.pk, 2.5)])
    body = admin_client.get(page("best-of-n", project)).content.decode()
    assert (
        body.index("high **answer**") < body.index("low &lt;script&gt;") < body.index(unscored.text)
    )
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "You are terse. Réponds en &lt;b&gt;HTML&lt;/b&gt; si besoin." in body
    assert "<strong>system</strong>" in body and "<strong>user</strong>" in body
