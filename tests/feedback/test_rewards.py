"""Reward models as rows: one active per project, deletion takes scores and files, new
responses of a project with an active model are scored by a job."""

import pytest
from django.db import IntegrityError, transaction

from feedback.jobs import job_start, score_new_responses
from feedback.models import Job, ResponseScore, RewardModel
from feedback.rewards import (
    json_ready,
    reward_model_activate,
    reward_model_delete,
    scores_save,
)
from feedback.services import FeedbackError, prompts_import, responses_bulk_create
from tests.factories import PromptFactory, ResponseFactory, RewardModelFactory

pytestmark = pytest.mark.django_db


def test_the_database_refuses_a_second_active_model_in_a_project(project):
    RewardModelFactory(project=project, is_active=True)
    RewardModelFactory(is_active=True)  # another project's
    with (
        pytest.raises(IntegrityError, match="rewardmodel_one_active_per_project"),
        transaction.atomic(),
    ):
        RewardModelFactory(project=project, is_active=True)


def test_activating_a_model_deactivates_the_one_before(project):
    first, second = RewardModelFactory(project=project), RewardModelFactory(project=project)
    other = RewardModelFactory(is_active=True)
    reward_model_activate(reward_model=first)
    reward_model_activate(reward_model=second)
    assert set(RewardModel.objects.filter(is_active=True)) == {second, other}


def test_activating_a_model_scores_only_what_it_has_not_scored(project):
    model = RewardModelFactory(project=project)
    scored, unscored = ResponseFactory.create_batch(2, prompt=PromptFactory(project=project))
    scores_save(reward_model_id=model.pk, scores=[(scored.pk, 0.5), (unscored.pk, 0.1)])
    reward_model_activate(reward_model=model)
    assert not Job.objects.exists()  # a model the loop trained has scored everything

    ResponseScore.objects.filter(response=unscored).delete()
    reward_model_activate(reward_model=model)
    job = Job.objects.get()
    assert (job.kind, job.params["reward_model_id"]) == (Job.Kind.SCORE, model.pk)


def test_deleting_a_model_removes_its_scores_and_then_its_files(
    project, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.ARTIFACT_ROOT = tmp_path
    model = RewardModelFactory(project=project)
    model.artifact_dir.mkdir(parents=True)
    (model.artifact_dir / "model.safetensors").write_bytes(b"weights")
    kept = RewardModelFactory(project=project)
    kept.artifact_dir.mkdir(parents=True)
    response = ResponseFactory(prompt=PromptFactory(project=project))
    scores_save(reward_model_id=model.pk, scores=[(response.pk, 0.5)])
    scores_save(reward_model_id=kept.pk, scores=[(response.pk, 0.1)])

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        reward_model_delete(reward_model=model)
        assert model.artifact_dir.exists()  # the files outlive a deletion not yet committed
    for callback in callbacks:
        callback()
    assert not model.artifact_dir.exists() and kept.artifact_dir.exists()
    assert list(ResponseScore.objects.values_list("reward_model", flat=True)) == [kept.pk]


def test_deleting_a_project_removes_its_models_files(
    project, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.ARTIFACT_ROOT = tmp_path
    model = RewardModelFactory(project=project)
    (model.artifact_dir / "nested").mkdir(parents=True)
    kept = RewardModelFactory()
    kept.artifact_dir.mkdir(parents=True)
    with django_capture_on_commit_callbacks(execute=True):
        project.delete()  # what the admin does: the models go by cascade
    assert not model.artifact_dir.exists() and kept.artifact_dir.exists()


def test_a_model_whose_path_leaves_the_artifact_root_deletes_no_files(
    project, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    outside = tmp_path / "precious"
    outside.mkdir()
    model = RewardModelFactory(project=project, artifact_path="../precious")
    with django_capture_on_commit_callbacks(execute=True):
        reward_model_delete(reward_model=model)
    assert outside.exists() and not RewardModel.objects.exists()


def test_scores_save_replaces_a_score_rather_than_adding_one(project):
    model = RewardModelFactory(project=project)
    response = ResponseFactory(prompt=PromptFactory(project=project))
    scores_save(reward_model_id=model.pk, scores=[(response.pk, 0.5)])
    scores_save(reward_model_id=model.pk, scores=[(response.pk, -1.5)])
    assert list(ResponseScore.objects.values_list("score", flat=True)) == [-1.5]


def test_imported_responses_are_scored_by_the_active_model_once_committed(
    project, django_capture_on_commit_callbacks
):
    prompt = PromptFactory(project=project)
    responses_bulk_create(project=project, rows=[(1, {"prompt_id": prompt.pk, "text": "x"})])
    assert not Job.objects.exists()  # no active model: nothing to score with

    model = RewardModelFactory(project=project, is_active=True)
    with django_capture_on_commit_callbacks() as callbacks:
        responses_bulk_create(project=project, rows=[(1, {"prompt_id": prompt.pk, "text": "y"})])
        prompts_import(project=project, rows=[(1, {"prompt": "Hi?", "responses": ["Hello."]})])
    job = Job.objects.get()
    assert (job.kind, job.status) == (Job.Kind.SCORE, Job.Status.QUEUED)
    assert job.params == {"reward_model_id": model.pk, "only_missing": True, "batch_size": 64}
    assert len(callbacks) == 1  # the queued job will find both imports' responses


def test_a_new_scoring_job_starts_once_the_queued_one_runs(project):
    model = RewardModelFactory(project=project, is_active=True)
    first = score_new_responses(project=project)
    assert score_new_responses(project=project) == first
    Job.objects.filter(pk=first.pk).update(status=Job.Status.RUNNING)
    second = score_new_responses(project=project)
    assert second != first and second.params["reward_model_id"] == model.pk


def test_a_scoring_job_without_a_model_takes_the_active_one_or_is_refused(project):
    with pytest.raises(FeedbackError) as refused:
        job_start(project=project, kind=Job.Kind.SCORE, params={})
    assert "reward_model_id" in refused.value.errors
    another = RewardModelFactory()
    with pytest.raises(FeedbackError) as refused:
        job_start(project=project, kind=Job.Kind.SCORE, params={"reward_model_id": another.pk})
    assert "No reward model" in refused.value.errors["reward_model_id"][0]
    active = RewardModelFactory(project=project, is_active=True)
    job = job_start(project=project, kind=Job.Kind.SCORE, params={})
    assert job.params["reward_model_id"] == active.pk


def test_metrics_become_json_that_postgresql_stores():
    import numpy as np

    metrics = {"r": float("nan"), "a": np.float32(0.5), "bins": (np.int64(3), float("inf"))}
    assert json_ready(metrics) == {"r": None, "a": 0.5, "bins": [3, None]}
