"""Who gets what from every URL: each role against each page, htmx partial and API endpoint.

The URL conf is walked, so a new URL without a row in EXPECTED fails
`test_every_url_has_a_row`. The Django admin's own URLs are left to Django, but two of them
are rows here; static files are served by WhiteNoise, outside the URL conf. A status is
what the role gets: 200/201/204 done, 302 sent on (anonymous to the login page), 400/422
let in but the (empty) input refused, 401 no credentials, 403 a member without the right,
404 the project (or task, job) does not exist for the caller, 405 method not allowed.
"""

from dataclasses import dataclass, field

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from feedback import queue
from feedback.models import Job, Project, ProjectMember, SelectionRound, Submission, Task
from tests.factories import (
    MemberFactory,
    ProjectFactory,
    ResponseFactory,
    RewardModelFactory,
    UserFactory,
    task_with_responses,
)

ROLES = ["anonymous", "annotator", "other_annotator", "viewer", "admin", "staff", "superuser"]
SKIPPED_NAMESPACES = {"admin"}  # Django's own; see ADMIN_ROWS


@dataclass(frozen=True)
class Row:
    """One request and the status each role gets."""

    statuses: dict[str, int]
    method: str = "get"
    htmx: bool = False
    data: dict = field(default_factory=dict)


def by_role(anonymous, annotator, other_annotator, viewer, admin, staff, superuser):
    statuses = [anonymous, annotator, other_annotator, viewer, admin, staff, superuser]
    return dict(zip(ROLES, statuses, strict=True))


# Shorthands for the usual shapes.
API_MEMBERS = by_role(401, 200, 404, 200, 200, 404, 200)  # every member reads
API_READERS = by_role(401, 403, 404, 200, 200, 404, 200)  # admins and viewers read
API_ADMIN_WRITE = by_role(401, 403, 404, 403, 400, 404, 400)  # admins write (empty: 400)
PAGE_ANNOTATORS = by_role(302, 200, 404, 404, 200, 404, 200)  # annotators and admins
PAGE_READERS = by_role(302, 403, 404, 200, 200, 404, 200)
PAGE_ADMINS = by_role(302, 403, 404, 403, 200, 404, 200)
ONLY_POST = by_role(*[405] * 7)  # a GET of a POST-only URL
API_JOB_START = by_role(401, 403, 404, 403, 202, 404, 202)  # admins start a job (202)
PAGE_ADMIN_ACTION = by_role(302, 403, 404, 403, 302, 404, 302)  # done, back to the page

EXPECTED: dict[str, list[Row]] = {
    # Accounts
    "login": [
        Row(by_role(200, 200, 200, 200, 200, 200, 200)),
        Row(
            by_role(200, 200, 200, 200, 200, 200, 200),  # the form again, with the error
            method="post",
            data={"username": "ann", "password": "wrong"},
        ),
    ],
    "logout": [
        Row(ONLY_POST, method="get"),
        Row(by_role(302, 302, 302, 302, 302, 302, 302), method="post"),
    ],
    # API: schema and docs are for signed-in users only.
    "api:schema": [Row(by_role(401, 200, 200, 200, 200, 200, 200))],
    "api:docs": [Row(by_role(401, 200, 200, 200, 200, 200, 200))],
    "api:project-list": [
        Row(by_role(401, 200, 200, 200, 200, 200, 200)),
        Row(by_role(401, 403, 403, 403, 403, 400, 400), method="post"),
    ],
    "api:project-detail": [
        Row(API_MEMBERS),
        Row(by_role(401, 403, 404, 403, 200, 404, 200), method="patch"),
    ],
    "api:prompt-list": [Row(API_MEMBERS), Row(API_ADMIN_WRITE, method="post")],
    "api:prompt-detail": [Row(API_MEMBERS)],
    "api:response-list": [Row(API_MEMBERS), Row(API_ADMIN_WRITE, method="post")],
    "api:response-detail": [Row(API_MEMBERS)],
    "api:task-list": [Row(API_MEMBERS)],
    "api:task-detail": [Row(API_MEMBERS)],
    # Annotators see their own submissions only: the other annotator's is not there.
    "api:feedback-list": [Row(API_MEMBERS)],
    "api:feedback-detail": [Row(by_role(401, 200, 404, 200, 200, 404, 200))],
    "api:project-export": [Row(API_READERS)],
    "api:project-agreement": [Row(API_READERS)],
    "api:project-consistency": [Row(API_READERS)],
    "api:project-dashboard": [Row(API_READERS)],
    "api:judge-quality": [Row(API_READERS)],
    "api:leaderboard": [Row(API_READERS)],
    "api:job-detail": [Row(API_READERS)],
    # Reward models are for admins and viewers; admins train, activate, delete, start jobs.
    "api:reward-model-list": [Row(API_READERS), Row(API_ADMIN_WRITE, method="post")],
    "api:reward-model-detail": [
        Row(API_READERS),
        Row(by_role(401, 403, 404, 403, 204, 404, 204), method="delete"),
    ],
    "api:reward-model-activate": [Row(by_role(401, 403, 404, 403, 200, 404, 200), method="post")],
    "api:reward-model-score": [Row(API_JOB_START, method="post")],
    "api:reward-model-evaluate": [Row(API_JOB_START, method="post")],
    # The active-learning loop: its configuration is for admins only, reads included.
    "api:loop-config": [
        Row(by_role(401, 403, 404, 403, 200, 404, 200)),
        Row(by_role(401, 403, 404, 403, 200, 404, 200), method="patch"),  # {}: no change
    ],
    "api:round-list": [
        Row(API_READERS),
        Row(by_role(401, 403, 404, 403, 202, 404, 202), method="post"),  # a round starts
    ],
    "api:round-detail": [Row(API_READERS)],
    "annotate:loop": [Row(PAGE_ADMINS), Row(PAGE_ADMINS, method="post")],
    "annotate:loop-rounds": [Row(PAGE_ADMINS | {"anonymous": 401}, htmx=True)],
    "annotate:loop-round-start": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(by_role(302, 403, 404, 403, 302, 404, 302), method="post"),
    ],
    # Admin pages of this project
    "feedback:project-dashboard": [Row(PAGE_READERS)],
    # Superusers create projects (an empty form: the page again, with errors).
    "feedback:project-create": [
        Row(by_role(302, 403, 403, 403, 403, 403, 200)),
        Row(by_role(302, 403, 403, 403, 403, 403, 422), method="post"),
    ],
    "feedback:project-configure": [
        Row(PAGE_ADMINS),
        Row(PAGE_ADMINS | {"admin": 422, "superuser": 422}, method="post"),
    ],
    # Whoever sets up a project: superusers, and admins of some project.
    "feedback:guidelines-preview": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(by_role(401, 403, 403, 403, 200, 403, 200), method="post", htmx=True),
    ],
    "feedback:project-member-add": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(
            PAGE_ADMINS | {"anonymous": 401, "admin": 422, "superuser": 422},
            method="post",
            htmx=True,
        ),
    ],
    "feedback:project-member-role": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(
            PAGE_ADMINS | {"anonymous": 401, "admin": 422, "superuser": 422},
            method="post",
            htmx=True,
        ),
    ],
    # Removing the viewer: admins are sent back to the page, or get the list (htmx).
    "feedback:project-member-remove": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(by_role(302, 403, 404, 403, 302, 404, 302), method="post"),
        Row(by_role(401, 403, 404, 403, 200, 404, 200), method="post", htmx=True),
    ],
    "feedback:project-agreement": [Row(PAGE_READERS)],
    "feedback:project-leaderboard": [Row(PAGE_READERS)],
    "annotate:judge-quality": [Row(PAGE_READERS)],
    "annotate:project-jobs": [Row(PAGE_ADMINS)],
    "annotate:job-generate": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(PAGE_ADMINS, method="post"),  # empty form: the page again, with errors
    ],
    "annotate:job-judge": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(PAGE_ADMINS, method="post"),
    ],
    "annotate:reward-models": [Row(PAGE_ADMINS)],
    "annotate:reward-model": [Row(PAGE_ADMINS)],
    "annotate:best-of-n": [Row(PAGE_ADMINS)],
    "annotate:reward-model-train": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(PAGE_ADMINS, method="post"),  # empty form: the page again, with errors
    ],
    "annotate:reward-model-evaluate": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(PAGE_ADMINS, method="post"),
    ],
    "annotate:reward-model-activate": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(PAGE_ADMIN_ACTION, method="post"),
    ],
    "annotate:reward-model-score": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(PAGE_ADMIN_ACTION, method="post"),
    ],
    "annotate:reward-model-delete": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(PAGE_ADMIN_ACTION, method="post"),
    ],
    # Polled by htmx: a session that ended gets 401, not the login page swapped in.
    "annotate:job-progress": [Row(PAGE_ADMINS | {"anonymous": 401}, htmx=True)],
    "annotate:job-cancel": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(by_role(302, 403, 404, 403, 302, 404, 302), method="post"),
        Row(by_role(401, 403, 404, 403, 200, 404, 200), method="post", htmx=True),
    ],
    "annotate:job-retry": [
        Row(ONLY_POST | {"anonymous": 302}),
        Row(by_role(302, 403, 404, 403, 302, 404, 302), method="post"),
        Row(by_role(401, 403, 404, 403, 200, 404, 200), method="post", htmx=True),
    ],
    # Annotator pages
    "annotate:project-list": [Row(by_role(302, 200, 200, 200, 200, 200, 200))],
    # GET shows the page (and the task held); POST takes a task.
    "annotate:task-next": [
        Row(PAGE_ANNOTATORS),
        Row(PAGE_ANNOTATORS | {"anonymous": 401}, htmx=True),
        Row(PAGE_ANNOTATORS | {"anonymous": 401}, method="post", htmx=True),
        Row(by_role(405, 405, 405, 405, 405, 405, 405), method="put"),
    ],
    "annotate:progress": [Row(PAGE_ANNOTATORS | {"anonymous": 401}, htmx=True)],
    # Only the annotator who holds the task opens it.
    "annotate:task-detail": [Row(by_role(302, 200, 404, 404, 404, 404, 404))],
    "annotate:task-submit": [
        Row(by_role(405, 405, 405, 405, 405, 405, 405)),
        Row(by_role(401, 422, 404, 404, 404, 404, 404), method="post", htmx=True),
    ],
    "annotate:task-skip": [
        Row(by_role(405, 405, 405, 405, 405, 405, 405)),
        Row(by_role(401, 200, 404, 404, 404, 404, 404), method="post", htmx=True),
    ],
}

# Two of the Django admin's URLs: staff members get in, only superusers see projects.
ADMIN_ROWS: dict[str, list[Row]] = {
    "admin:index": [Row(by_role(302, 302, 302, 302, 302, 200, 200))],
    # Staff without model permissions: 403.
    "admin:feedback_project_changelist": [Row(by_role(302, 302, 302, 302, 302, 403, 200))],
}


def url_arguments(patterns=None, namespace: str = "", outer=frozenset()) -> dict:
    """Every named URL pattern of the URL conf, `namespace:name`, with the names of the
    arguments its route takes; the admin's URLs are left out."""
    found: dict[str, frozenset[str]] = {}
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        arguments = outer | frozenset(getattr(pattern.pattern, "converters", {}))
        if isinstance(pattern, URLResolver):
            inner = pattern.namespace or ""
            if inner in SKIPPED_NAMESPACES:
                continue
            prefix = f"{namespace}{inner}:" if inner else namespace
            found |= url_arguments(pattern.url_patterns, prefix, arguments)
        elif isinstance(pattern, URLPattern):
            assert pattern.name, f"URL pattern {pattern.pattern} has no name"
            found[f"{namespace}{pattern.name}"] = arguments
    return found


ROUTES = url_arguments()


def test_every_url_has_a_row():
    missing = set(ROUTES) - set(EXPECTED)
    assert not missing, f"URLs without a row in EXPECTED: {sorted(missing)}"
    stale = set(EXPECTED) - set(ROUTES)
    assert not stale, f"rows for URLs that no longer exist: {sorted(stale)}"


def test_every_row_names_every_role():
    for name, rows in {**EXPECTED, **ADMIN_ROWS}.items():
        for row in rows:
            assert set(row.statuses) == set(ROLES), name


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """One project with a task held and answered, a job, and a user of each role.

    Made once for the module and committed (some 300 requests run against it); each
    test's own writes (a skip, a cancelled job) roll back with its transaction.
    """
    with django_db_blocker.unblock():
        users, ids = _make_world()
        yield users, ids
        Project.objects.filter(pk__in=[ids["project_id"], ids["other_project_id"]]).delete()
        get_user_model().objects.filter(pk__in=[user.pk for user in users.values()]).delete()


def _make_world():
    project = ProjectFactory()
    other_project = ProjectFactory()
    users = {
        "annotator": UserFactory(username="ann"),
        "other_annotator": UserFactory(username="other-ann"),
        "viewer": UserFactory(username="viewer"),
        "admin": UserFactory(username="padmin"),
        "staff": UserFactory(username="staff", is_staff=True),
        "superuser": UserFactory(username="root", is_staff=True, is_superuser=True),
    }
    Role = ProjectMember.Role
    MemberFactory(project=project, user=users["annotator"], role=Role.ANNOTATOR)
    MemberFactory(project=other_project, user=users["other_annotator"], role=Role.ANNOTATOR)
    MemberFactory(project=project, user=users["viewer"], role=Role.VIEWER)
    MemberFactory(project=project, user=users["admin"], role=Role.ADMIN)
    task = task_with_responses(project, Task.Layout.PAIR, 2)
    ResponseFactory(prompt=task.prompt)
    assert queue.task_claim_next(project=project, annotator=users["annotator"]).task == task
    submission = Submission.objects.create(task=task, annotator=users["annotator"])
    job = Job.objects.create(project=project, kind=Job.Kind.JUDGE, created_by=users["admin"])
    reward_model = RewardModelFactory(project=project)
    selection_round = SelectionRound.objects.create(
        project=project, number=1, trigger="manual", selector="margin"
    )
    kwargs = {
        "project_id": project.pk,
        "task_id": task.pk,
        "prompt_id": task.prompt_id,
        "response_id": task.prompt.responses.first().pk,
        "submission_id": submission.pk,
        "job_id": job.pk,
        "member_id": ProjectMember.objects.get(project=project, user=users["viewer"]).pk,
        "reward_model_id": reward_model.pk,
        "other_project_id": other_project.pk,
        "number": selection_round.number,
    }
    return users, kwargs


def concrete_url(name: str, ids: dict[str, int]) -> str:
    """The URL of `name`, its arguments (`project_id`, `task_id`, ...) filled from the world."""
    arguments = ROUTES.get(name, frozenset())
    unknown = arguments - set(ids)
    assert not unknown, f"{name} takes {sorted(unknown)}: add them to the world fixture"
    return reverse(name, kwargs={key: ids[key] for key in arguments})


def cases(table: dict[str, list[Row]]):
    return [
        pytest.param(name, row, role, id=f"{name}-{row.method}{'-htmx' if row.htmx else ''}-{role}")
        for name, rows in table.items()
        for row in rows
        for role in ROLES
    ]


def request_as(world, name: str, row: Row, role: str, *, token: bool) -> int:
    users, kwargs = world
    url = concrete_url(name, kwargs)
    client = APIClient(enforce_csrf_checks=False)
    if role != "anonymous":
        if token:
            client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=users[role])}")
        else:
            client.force_login(users[role])
    headers = {"HX-Request": "true"} if row.htmx else {}
    data = dict(row.data)
    extra = {"format": "json"} if name.startswith("api:") else {}
    response = getattr(client, row.method)(url, data, headers=headers, **extra)
    return response.status_code


@pytest.mark.parametrize(("name", "row", "role"), cases(EXPECTED))
def test_status_by_role(db, world, name, row, role):
    # The API by token; its docs page, opened in a browser, by session.
    token = name.startswith("api:") and name != "api:docs"
    assert request_as(world, name, row, role, token=token) == row.statuses[role]


@pytest.mark.parametrize(("name", "row", "role"), cases(ADMIN_ROWS))
def test_admin_status_by_role(db, world, name, row, role):
    assert request_as(world, name, row, role, token=False) == row.statuses[role]
