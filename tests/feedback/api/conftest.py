import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from feedback.models import ProjectMember
from tests.factories import JudgeFactory, MemberFactory, UserFactory, feedback_fill


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def members(project):
    """One user per role in `project`, plus two more annotators for agreement."""
    users = {}
    for role in ("admin", "annotator", "viewer"):
        users[role] = UserFactory(username=role)
        MemberFactory(project=project, user=users[role], role=role)
    for name in ("ann2", "ann3"):
        users[name] = UserFactory(username=name)
        MemberFactory(project=project, user=users[name], role=ProjectMember.Role.ANNOTATOR)
    return users


@pytest.fixture
def filled(project, members):
    """The project with every kind of feedback from three annotators and one judge."""
    annotators = [members["annotator"], members["ann2"], members["ann3"]]
    return feedback_fill(project, annotators, judge=JudgeFactory(name="judge-a"))


@pytest.fixture
def admin_client(members):
    return client_for(members["admin"])


@pytest.fixture
def viewer_client(members):
    return client_for(members["viewer"])
