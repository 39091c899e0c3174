"""Reward-model jobs run in process: training reads the export, stores the model and its
files; scoring fills and resumes; evaluation works on another project's feedback."""

import json
from urllib.parse import urlencode

import pytest
from django.db.models import Max
from django.urls import reverse

from feedback.jobs import job_params
from feedback.models import (
    Job,
    Response,
    ResponseScore,
    RewardEvaluation,
    RewardModel,
    Submission,
)
from feedback.services import FeedbackError
from tests.factories import (
    JudgeFactory,
    MemberFactory,
    ProjectFactory,
    PromptFactory,
    RewardModelFactory,
    UserFactory,
    feedback_fill,
)
from tests.worker.conftest import claimed_job
from worker.runs import (
    generation_run,
    reward_evaluation_run,
    reward_training_run,
    scoring_run,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def annotators(project):
    users = [UserFactory(username=name) for name in ("r1", "r2", "r3")]
    for user in users:
        MemberFactory(project=project, user=user)
    return users


def train_params(backbone) -> dict:
    return {
        "name": "tiny <b>rm</b>",
        "backbone": str(backbone),
        "backbone_kind": "embedding",
        "data": {"pairs": True},
        "training": {"batch_size": 8, "max_epochs": 1, "max_length": 48},
    }


@pytest.mark.slow
def test_training_stores_the_model_its_files_and_the_export_it_read(
    project, annotators, tiny_encoder_dir, settings, tmp_path, client
):
    # Chats with a system turn, HTML-looking and Unicode text, three annotators, a judge.
    feedback_fill(project, annotators, judge=JudgeFactory(name="judge-a"))
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    job = claimed_job(project, Job.Kind.TRAIN_REWARD, train_params(tiny_encoder_dir))
    reward_training_run(job, job_params(job))

    model = RewardModel.objects.get(job=job)
    assert (model.project, model.name, model.backbone_kind) == (
        project,
        "tiny <b>rm</b>",
        "embedding",
    )
    assert model.artifact_dir.is_relative_to(settings.ARTIFACT_ROOT)
    assert (model.artifact_dir / "params.json").exists()
    # 11 pairwise rows: three annotators' choices (ties dropped) and the judge's.
    assert model.data_snapshot["counts"] == {"pairs": {"human": 10, "judge:judge-a": 1}}
    assert model.data_snapshot["comparisons"] == 11
    newest = Submission.objects.filter(pairwise__isnull=False).aggregate(Max("id"))["id__max"]
    assert model.data_snapshot["max_submission_id"] == newest
    assert model.parameters["n_train"] + model.parameters["n_held_out"] == 11
    assert model.parameters["training"]["max_length"] == 48
    assert model.curve and {"step", "train_loss", "held_out_accuracy"} <= set(model.curve[0])
    held_out = model.metrics["held_out"]
    assert held_out["n"] == model.parameters["n_held_out"] and "reliability" in held_out
    json.dumps(model.metrics, allow_nan=False)  # storable: no NaN slipped through
    job.refresh_from_db()
    assert job.total > 0 and job.done == job.total

    # The stored export query downloads exactly the rows that were trained on.
    admin = UserFactory(username="boss")
    MemberFactory(project=project, user=admin, role="admin")
    client.force_login(admin)
    query = urlencode(model.export_options["pairs"])
    response = client.get(f"{reverse('api:project-export', args=[project.pk])}?{query}")
    assert response.status_code == 200
    assert len(b"".join(response.streaming_content).splitlines()) == 11


def test_training_with_nothing_to_learn_from_says_so(project, tiny_encoder_dir):
    job = claimed_job(project, Job.Kind.TRAIN_REWARD, train_params(tiny_encoder_dir))
    with pytest.raises(FeedbackError, match="nothing to train on"):
        reward_training_run(job, job_params(job))
    assert not RewardModel.objects.exists()


def test_scoring_fills_every_response_and_a_rerun_adds_nothing(project, annotators, reward_model):
    feedback_fill(project, annotators[:1])
    job = claimed_job(project, Job.Kind.SCORE, {"reward_model_id": reward_model.pk})
    scoring_run(job, job_params(job))
    responses = Response.objects.filter(prompt__project=project)
    scores = ResponseScore.objects.filter(reward_model=reward_model)
    assert scores.count() == responses.count() > 0
    job.refresh_from_db()
    assert job.done == job.total == responses.count()
    before = dict(scores.values_list("response_id", "score"))

    again = claimed_job(project, Job.Kind.SCORE, {"reward_model_id": reward_model.pk})
    scoring_run(again, job_params(again))
    again.refresh_from_db()
    assert again.total == 0
    assert dict(scores.values_list("response_id", "score")) == before

    everything = {"reward_model_id": reward_model.pk, "only_missing": False}
    third = claimed_job(project, Job.Kind.SCORE, everything)
    scoring_run(third, job_params(third))
    third.refresh_from_db()
    assert third.total == responses.count() == scores.count()


def test_evaluation_on_another_projects_feedback_is_stored_by_project(reward_model, annotators):
    other = ProjectFactory()
    other.aspects.create(name="Helpfulness")
    other.aspects.create(name="Honesty", scale_min=1, scale_max=7)
    other.span_labels.create(name="Factual error")
    for user in annotators:
        MemberFactory(project=other, user=user)
    feedback_fill(other, annotators, chat=False)
    job = claimed_job(other, Job.Kind.EVALUATE_REWARD, {"reward_model_id": reward_model.pk})
    reward_evaluation_run(job, job_params(job))

    evaluation = RewardEvaluation.objects.get(reward_model=reward_model, project=other)
    assert evaluation.job == job
    assert evaluation.metrics["n"] == evaluation.data_snapshot["comparisons"] == 10
    # Each vote's agreement is the share of votes on its pair that chose as it did.
    levels = {
        level["agreement"]: level["n"] for level in evaluation.metrics["accuracy_by_agreement"]
    }
    assert levels == {0.33: 1, 0.67: 2, 1.0: 6}
    # A second evaluation on the same project replaces the first.
    again = claimed_job(other, Job.Kind.EVALUATE_REWARD, {"reward_model_id": reward_model.pk})
    reward_evaluation_run(again, job_params(again))
    assert RewardEvaluation.objects.get(reward_model=reward_model, project=other).job == again


def test_a_finished_generation_job_has_its_responses_scored_by_the_active_model(project, scripted):
    PromptFactory(project=project)
    generate = {"models": [{"name": "scripted"}], "n": 2, "temperature": 1.0}
    job = claimed_job(project, Job.Kind.GENERATE, generate)
    generation_run(job, job_params(job), load=scripted(lambda prompt: f"answer {prompt}"))
    assert not Job.objects.filter(kind=Job.Kind.SCORE).exists()  # no active model

    model = RewardModelFactory(project=project, is_active=True)
    job = claimed_job(project, Job.Kind.GENERATE, generate)
    generation_run(job, job_params(job), load=scripted(lambda prompt: f"other {prompt}"))
    scoring = Job.objects.get(kind=Job.Kind.SCORE)
    assert scoring.status == Job.Status.QUEUED and scoring.params["reward_model_id"] == model.pk
