"""Reward models over the API: list and detail with metrics, training started with field
errors, activation, deletion, scoring and evaluation jobs, scores on responses and in the
export. Annotators see none of it."""

import json

import pytest
from django.urls import reverse

from feedback.models import Job, Project, Response, RewardModel
from feedback.rewards import scores_save
from tests.factories import (
    MemberFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    RewardModelFactory,
)
from tests.feedback.api.conftest import client_for

pytestmark = pytest.mark.django_db


def url(name: str, project, model=None) -> str:
    args = [project.pk] if model is None else [project.pk, model.pk]
    return reverse(f"api:{name}", args=args)


@pytest.fixture
def annotator_client(members):
    return client_for(members["annotator"])


@pytest.fixture
def backbone(settings, tmp_path) -> str:
    settings.LOCAL_MODEL_DIRS = [str(tmp_path)]
    (tmp_path / "encoder").mkdir()
    return str(tmp_path / "encoder")


def test_readers_list_models_with_metrics_and_curve_annotators_do_not(
    project, admin_client, viewer_client, annotator_client, outsider
):
    model = RewardModelFactory(project=project)
    RewardModelFactory()  # another project's
    listed = viewer_client.get(url("reward-model-list", project)).json()["results"]
    assert [m["id"] for m in listed] == [model.pk]
    assert listed[0]["metrics"]["held_out"]["accuracy"] == 0.75
    assert [point["step"] for point in listed[0]["curve"]] == [2, 4]
    detail = admin_client.get(url("reward-model-detail", project, model)).json()
    assert detail["name"] == model.name and detail["evaluations"] == []
    assert annotator_client.get(url("reward-model-list", project)).status_code == 403
    assert annotator_client.get(url("reward-model-detail", project, model)).status_code == 403
    assert client_for(outsider).get(url("reward-model-list", project)).status_code == 404


def test_training_starts_a_job_and_refused_options_name_their_field(
    project, admin_client, viewer_client, annotator_client, backbone
):
    start = url("reward-model-list", project)
    refused = admin_client.post(start, {}, format="json")
    assert refused.status_code == 400
    assert set(refused.json()["errors"]) == {"name", "backbone"}
    bad = {
        "name": "rm",
        "backbone": "/etc",
        "data": {"pairs": False, "aspect": "Nope"},
        "training": {"learning_rate": "0.1", "batch_size": 0},
    }
    errors = admin_client.post(start, bad, format="json").json()["errors"]
    assert "not in an allowed model directory" in errors["backbone"][0]
    assert "choose pairs, rankings or ratings" in errors["data"][0]
    assert set(errors) >= {"training.learning_rate", "training.batch_size"}
    unknown_aspect = {"name": "rm", "backbone": backbone, "data": {"ratings": True, "aspect": "X"}}
    errors = admin_client.post(start, unknown_aspect, format="json").json()["errors"]
    assert errors == {"data.aspect": ["'X' is not an aspect of this project."]}
    body = {"name": "rm", "backbone": backbone, "training": {"max_epochs": 1}}
    assert viewer_client.post(start, body, format="json").status_code == 403
    assert annotator_client.post(start, body, format="json").status_code == 403

    started = admin_client.post(start, body, format="json")
    assert started.status_code == 202
    job = Job.objects.get(pk=started.json()["id"])
    assert (job.kind, job.status, job.project) == (Job.Kind.TRAIN_REWARD, "queued", project)
    assert job.params["training"]["max_epochs"] == 1
    assert job.params["data"]["pairs"] is True and job.params["backbone_kind"] == "embedding"
    polled = admin_client.get(reverse("api:job-detail", args=[project.pk, job.pk])).json()
    assert polled["status"] == "queued" and polled["kind"] == "train_reward"


def test_activation_picks_whose_scores_responses_show(
    project, members, admin_client, viewer_client, annotator_client
):
    first, second = RewardModelFactory(project=project), RewardModelFactory(project=project)
    response = ResponseFactory(prompt=PromptFactory(project=project))
    scores_save(reward_model_id=first.pk, scores=[(response.pk, 1.5)])
    scores_save(reward_model_id=second.pk, scores=[(response.pk, -0.25)])
    responses = url("response-list", project)
    assert viewer_client.get(responses).json()["results"][0]["score"] is None  # none active

    activated = admin_client.post(url("reward-model-activate", project, first))
    assert activated.status_code == 200 and activated.json()["is_active"] is True
    admin_client.post(url("reward-model-activate", project, second))
    assert list(RewardModel.objects.filter(is_active=True)) == [second]
    assert viewer_client.get(responses).json()["results"][0]["score"] == -0.25
    chosen = viewer_client.get(responses, {"reward_model": first.pk}).json()["results"]
    assert chosen[0]["score"] == 1.5
    detail = reverse("api:response-detail", args=[project.pk, response.pk])
    assert viewer_client.get(detail).json()["score"] == -0.25
    # Another project's model is refused, not quietly shown as no scores.
    refused = viewer_client.get(responses, {"reward_model": RewardModelFactory().pk})
    assert refused.status_code == 400 and "reward_model" in refused.json()["errors"]
    # Annotators read responses without scores: a score would steer their choice.
    assert annotator_client.get(responses).json()["results"][0]["score"] is None
    assert annotator_client.post(url("reward-model-activate", project, first)).status_code == 403


def test_deleting_a_model_removes_it_and_its_files(
    project, admin_client, viewer_client, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.ARTIFACT_ROOT = tmp_path
    model = RewardModelFactory(project=project)
    model.artifact_dir.mkdir(parents=True)
    assert viewer_client.delete(url("reward-model-detail", project, model)).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        deleted = admin_client.delete(url("reward-model-detail", project, model))
    assert deleted.status_code == 204
    assert not RewardModel.objects.exists() and not model.artifact_dir.exists()
    assert admin_client.get(url("reward-model-detail", project, model)).status_code == 404


def test_scoring_and_evaluation_start_jobs_where_the_data_is(project, members, admin_client):
    model = RewardModelFactory(project=project)
    scoring = admin_client.post(url("reward-model-score", project, model), {}, format="json")
    assert scoring.status_code == 202
    assert scoring.json()["params"] == {
        "reward_model_id": model.pk,
        "only_missing": True,
        "batch_size": 64,
    }
    refused = admin_client.post(
        url("reward-model-score", project, model), {"only_missing": "yes"}, format="json"
    )
    assert refused.status_code == 400 and "only_missing" in refused.json()["errors"]

    mine = ProjectFactory()
    MemberFactory(project=mine, user=members["admin"], role="admin")
    theirs = ProjectFactory()
    evaluate = url("reward-model-evaluate", project, model)
    started = admin_client.post(evaluate, {"project": mine.pk}, format="json")
    assert started.status_code == 202
    job = Job.objects.get(pk=started.json()["id"])
    assert (job.kind, job.project, job.params["reward_model_id"]) == (
        Job.Kind.EVALUATE_REWARD,
        mine,
        model.pk,
    )
    # A project the caller does not administer is refused like one that does not exist.
    for other in (theirs.pk, Project.objects.order_by("pk").last().pk + 1):
        refused = admin_client.post(evaluate, {"project": other}, format="json")
        assert refused.status_code == 400
        assert refused.json()["errors"] == {"project": [f"No project {other} that you administer."]}
    own = admin_client.post(evaluate, {"data": {"rankings": True, "pairs": False}}, format="json")
    assert Job.objects.get(pk=own.json()["id"]).project == project


def export_rows(client, project, **params) -> list[dict]:
    response = client.get(reverse("api:project-export", args=[project.pk]), params)
    assert response.status_code == 200, response.content
    return [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]


def test_the_export_carries_a_models_scores_once_every_response_has_one(
    project, filled, viewer_client
):
    model = RewardModelFactory(project=project)
    export = reverse("api:project-export", args=[project.pk])
    refused = viewer_client.get(export, {"scores": "active"})
    assert refused.status_code == 400 and "scores" in refused.json()["errors"]
    refused = viewer_client.get(export, {"scores": model.pk})
    assert "responses have no score" in refused.json()["detail"]
    refused = viewer_client.get(export, {"scores": RewardModelFactory().pk})
    assert refused.status_code == 400 and "No reward model" in refused.json()["errors"]["scores"][0]

    responses = Response.objects.filter(prompt__project=project).order_by("pk")
    score = {r.pk: index / 10 for index, r in enumerate(responses)}
    scores_save(reward_model_id=model.pk, scores=list(score.items()))
    RewardModel.objects.filter(pk=model.pk).update(is_active=True)

    pairs = export_rows(viewer_client, project, shape="pairs", scores="active")
    assert pairs and all(
        row["chosen_score"] == score[row["chosen_response_id"]]
        and row["rejected_score"] == score[row["rejected_response_id"]]
        for row in pairs
    )
    unpaired = export_rows(viewer_client, project, shape="unpaired", scores=model.pk)
    assert all(row["score"] == score[row["response_id"]] for row in unpaired)
    ratings = export_rows(viewer_client, project, shape="ratings", scores=model.pk)
    assert all(c["score"] == score[c["response_id"]] for row in ratings for c in row["completions"])
    rankings = export_rows(viewer_client, project, shape="rankings", scores=model.pk)
    assert all(row["scores"] == [score[i] for i in row["response_ids"]] for row in rankings)
    spans = export_rows(viewer_client, project, shape="spans", scores=model.pk)
    assert all(row["score"] == score[row["response_id"]] for row in spans)
    assert "chosen_score" not in export_rows(viewer_client, project, shape="pairs")[0]
    raw = viewer_client.get(export, {"shape": "raw", "scores": model.pk})
    assert raw.status_code == 400 and "scores" in raw.json()["errors"]


def test_an_evaluation_on_a_project_the_reader_is_not_in_is_not_shown(
    project, members, viewer_client
):
    model = RewardModelFactory(project=project)
    elsewhere = ProjectFactory()
    model.evaluations.create(project=elsewhere, metrics={"accuracy": 0.9})
    model.evaluations.create(project=project, metrics={"accuracy": 0.7})
    detail = viewer_client.get(url("reward-model-detail", project, model)).json()
    assert [e["project"] for e in detail["evaluations"]] == [project.pk]
    MemberFactory(project=elsewhere, user=members["viewer"], role="viewer")
    detail = viewer_client.get(url("reward-model-detail", project, model)).json()
    assert {e["project"] for e in detail["evaluations"]} == {project.pk, elsewhere.pk}
