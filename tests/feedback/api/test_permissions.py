"""Each role against each endpoint: admins write, viewers read, annotators neither export
nor see other projects, outsiders learn nothing (404), anonymous callers must sign in."""

import pytest
from django.urls import reverse

from feedback.models import ProjectMember, Submission
from feedback.services import FeedbackInput, PairwiseInput, submission_create
from tests.factories import MemberFactory, ProjectFactory, UserFactory, task_with_responses
from tests.feedback.api.conftest import client_for

pytestmark = pytest.mark.django_db

ROLES = ["admin", "annotator", "viewer", "outsider", "anonymous"]
MEMBERS_READ = {"admin": 200, "annotator": 200, "viewer": 200, "outsider": 404, "anonymous": 401}
READERS = {"admin": 200, "annotator": 403, "viewer": 200, "outsider": 404, "anonymous": 401}
ADMIN_WRITES = {"admin": 201, "annotator": 403, "viewer": 403, "outsider": 404, "anonymous": 401}


@pytest.fixture
def world(project, members):
    """A pair task answered by the annotator, and an outsider with no role here."""
    task = task_with_responses(project, "pair", 2)
    submission = submission_create(
        task=task, annotator=members["annotator"], feedback=FeedbackInput(PairwiseInput("A", 2))
    )
    return {
        "project": project.pk,
        "prompt": task.prompt_id,
        "response": task.links.first().response_id,
        "task": task.pk,
        "submission": submission.pk,
        "users": {**members, "outsider": UserFactory(username="outsider"), "anonymous": None},
    }


def prompt_rows(world):
    return {"rows": [{"prompt": "A new question?", "responses": ["One.", "Two."]}]}


def response_rows(world):
    return {"responses": [{"prompt_id": world["prompt"], "text": "Another answer."}]}


ENDPOINTS = [
    ("project detail", "get", "api:project-detail", (), None, MEMBERS_READ),
    (
        "project update",
        "patch",
        "api:project-detail",
        (),
        lambda w: {"guidelines": "New."},
        {**ADMIN_WRITES, "admin": 200},
    ),
    ("prompt list", "get", "api:prompt-list", (), None, MEMBERS_READ),
    ("prompt import", "post", "api:prompt-list", (), prompt_rows, ADMIN_WRITES),
    ("prompt detail", "get", "api:prompt-detail", ("prompt",), None, MEMBERS_READ),
    ("response list", "get", "api:response-list", (), None, MEMBERS_READ),
    ("response bulk create", "post", "api:response-list", (), response_rows, ADMIN_WRITES),
    ("response detail", "get", "api:response-detail", ("response",), None, MEMBERS_READ),
    ("task list", "get", "api:task-list", (), None, MEMBERS_READ),
    ("task detail", "get", "api:task-detail", ("task",), None, MEMBERS_READ),
    ("feedback list", "get", "api:feedback-list", (), None, MEMBERS_READ),
    ("feedback detail", "get", "api:feedback-detail", ("submission",), None, MEMBERS_READ),
    ("export", "get", "api:project-export", (), None, READERS),
    ("agreement", "get", "api:project-agreement", (), None, READERS),
    ("consistency", "get", "api:project-consistency", (), None, READERS),
    ("judge quality", "get", "api:judge-quality", (), None, READERS),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("endpoint", "method", "url_name", "ids", "body", "expected"),
    ENDPOINTS,
    ids=[endpoint[0] for endpoint in ENDPOINTS],
)
def test_each_role_gets_what_its_role_allows(
    world, role, endpoint, method, url_name, ids, body, expected
):
    url = reverse(url_name, args=[world["project"], *(world[name] for name in ids)])
    client = client_for(world["users"][role])
    data = body(world) if body else None
    response = getattr(client, method)(url, data, format="json")
    assert response.status_code == expected[role], response.content[:300]


@pytest.mark.parametrize(
    ("role", "status"),
    [("admin", 200), ("annotator", 200), ("viewer", 200), ("outsider", 200), ("anonymous", 401)],
)
def test_project_list_shows_only_the_callers_projects(world, role, status):
    ProjectFactory(name="Somebody else's")
    response = client_for(world["users"][role]).get(reverse("api:project-list"))
    assert response.status_code == status
    if status == 200:
        names = [project["name"] for project in response.json()["results"]]
        assert "Somebody else's" not in names
        assert len(names) == (0 if role == "outsider" else 1)


@pytest.mark.parametrize("role", ["admin", "annotator", "viewer", "outsider"])
def test_only_staff_create_projects(world, role):
    response = client_for(world["users"][role]).post(
        reverse("api:project-list"), {"name": "New"}, format="json"
    )
    assert response.status_code == 403


def test_staff_create_a_project_and_become_its_admin(db):
    staff = UserFactory(username="boss", is_staff=True)
    response = client_for(staff).post(
        reverse("api:project-list"),
        {"name": "Fresh", "collects_pairwise": False, "collects_rating": True},
        format="json",
    )
    assert response.status_code == 201
    assert ProjectMember.objects.get(user=staff).role == ProjectMember.Role.ADMIN
    assert response.json()["feedback_kinds"] == ["rating"]


def test_a_project_that_collects_nothing_is_refused_naming_the_rule(db):
    staff = UserFactory(username="boss", is_staff=True)
    response = client_for(staff).post(
        reverse("api:project-list"), {"name": "Empty", "collects_pairwise": False}, format="json"
    )
    assert response.status_code == 400
    assert "collect at least one kind" in str(response.json()["errors"])


def test_an_annotator_of_one_project_cannot_reach_another(world):
    other = ProjectFactory(name="Other")
    stranger_task = task_with_responses(other, "pair", 2)
    annotator = UserFactory(username="other-annotator")
    MemberFactory(project=other, user=annotator, role=ProjectMember.Role.ANNOTATOR)
    client = client_for(world["users"]["annotator"])
    for name, extra in [
        ("api:project-detail", []),
        ("api:prompt-list", []),
        ("api:task-detail", [stranger_task.pk]),
        ("api:feedback-list", []),
        ("api:project-export", []),
    ]:
        assert client.get(reverse(name, args=[other.pk, *extra])).status_code == 404
    # Nor through its own project's URLs: ids from elsewhere are not found there.
    own = reverse("api:task-detail", args=[world["project"], stranger_task.pk])
    assert client.get(own).status_code == 404


def test_annotators_see_only_their_own_feedback(world, project):
    other_task = task_with_responses(project, "pair", 2)
    submission_create(
        task=other_task,
        annotator=world["users"]["ann2"],
        feedback=FeedbackInput(PairwiseInput("B", 1)),
    )
    url = reverse("api:feedback-list", args=[project.pk])
    own = client_for(world["users"]["annotator"]).get(url).json()["results"]
    assert [item["annotator"] for item in own] == ["annotator"]
    everyone = client_for(world["users"]["viewer"]).get(url).json()["results"]
    assert len(everyone) == Submission.objects.count() == 2


@pytest.mark.parametrize(
    ("role", "status"),
    [("admin", 200), ("annotator", 403), ("viewer", 200), ("outsider", 404)],
)
def test_the_agreement_page_is_for_project_admins_and_viewers(world, client, role, status):
    client.force_login(world["users"][role])
    response = client.get(reverse("feedback:project-agreement", args=[world["project"]]))
    assert response.status_code == status
    if status == 200:
        assert b"Fleiss" in response.content and b"Kendall" in response.content


def test_staff_who_are_not_members_do_not_see_the_agreement_page(world, client):
    client.force_login(UserFactory(username="staff", is_staff=True))
    response = client.get(reverse("feedback:project-agreement", args=[world["project"]]))
    assert response.status_code == 404


def test_a_time_filter_far_from_utc_is_answered_not_a_server_error(world, project):
    url = reverse("api:prompt-list", args=[project.pk])
    client = client_for(world["users"]["viewer"])
    response = client.get(url, {"created_before": "0570-02-09T14:51:51-18:42"})
    assert response.status_code == 200
    response = client.get(url, {"created_after": "0001-01-01T00:00:00+10:00"})
    assert response.status_code == 400
