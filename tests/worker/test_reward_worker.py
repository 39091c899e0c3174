"""A reward model end to end through a real Celery worker: trained from the API, listed
with its metrics, activated, its scores filled by a job and carried by the export."""

import json

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from feedback.models import Job, ProjectMember, Response, ResponseScore
from tests.factories import JudgeFactory, MemberFactory, UserFactory, feedback_fill
from tests.worker.celery_worker import finished, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_worker_trains_a_reward_model_whose_scores_reach_the_api_and_the_export(
    start_worker, project, tiny_encoder_dir, settings, tmp_path
):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    worker = start_worker(ARTIFACT_ROOT=str(settings.ARTIFACT_ROOT))
    annotators = [UserFactory(username=f"w{i}") for i in range(3)]
    for user in annotators:
        MemberFactory(project=project, user=user)
    feedback_fill(project, annotators, judge=JudgeFactory(name="judge-w"))
    admin = UserFactory(username="boss")
    MemberFactory(project=project, user=admin, role=ProjectMember.Role.ADMIN)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin)}")

    started = api.post(
        reverse("api:reward-model-list", args=[project.pk]),
        {
            "name": "tiny",
            "backbone": str(tiny_encoder_dir),
            "backbone_kind": "embedding",
            "training": {"batch_size": 8, "max_epochs": 1, "max_length": 48},
        },
        format="json",
    )
    assert started.status_code == 202, started.json()
    training = Job.objects.get(pk=started.json()["id"])
    wait_for(lambda: finished(training), 180, worker.output)
    assert training.status == Job.Status.SUCCEEDED, training.error
    assert training.done == training.total > 0

    listed = api.get(reverse("api:reward-model-list", args=[project.pk])).json()["results"]
    assert len(listed) == 1 and listed[0]["job"] == training.pk
    model = listed[0]
    assert model["metrics"]["held_out"]["n"] == model["parameters"]["n_held_out"] > 0
    assert model["curve"] and model["data_snapshot"]["comparisons"] == 11

    # Activating it starts a job that scores every response of the project.
    activate = reverse("api:reward-model-activate", args=[project.pk, model["id"]])
    assert api.post(activate).status_code == 200
    scoring = Job.objects.get(kind=Job.Kind.SCORE)
    wait_for(lambda: finished(scoring), 120, worker.output)
    assert scoring.status == Job.Status.SUCCEEDED, scoring.error
    responses = Response.objects.filter(prompt__project=project)
    scores = dict(
        ResponseScore.objects.filter(reward_model_id=model["id"]).values_list(
            "response_id", "score"
        )
    )
    assert set(scores) == set(responses.values_list("pk", flat=True))
    shown = api.get(reverse("api:response-list", args=[project.pk])).json()["results"]
    assert {row["id"]: row["score"] for row in shown} == pytest.approx(scores)

    export = api.get(
        reverse("api:project-export", args=[project.pk]), {"shape": "pairs", "scores": "active"}
    )
    assert export.status_code == 200
    rows = [json.loads(line) for line in b"".join(export.streaming_content).splitlines()]
    assert len(rows) == 11
    for row in rows:
        assert row["chosen_score"] == pytest.approx(scores[row["chosen_response_id"]])
        assert row["rejected_score"] == pytest.approx(scores[row["rejected_response_id"]])
