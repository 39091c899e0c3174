import pytest
from django.core.cache import cache

from feedback.models import ProjectMember
from tests.factories import (
    AspectFactory,
    MemberFactory,
    ProjectFactory,
    SpanLabelFactory,
    UserFactory,
)


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts with an empty cache, as it starts with an empty database."""
    cache.clear()


@pytest.fixture
def project(db):
    """A project collecting all five kinds, with two aspects and two span labels."""
    project = ProjectFactory()
    AspectFactory(project=project, name="Helpfulness")
    AspectFactory(project=project, name="Honesty", scale_min=1, scale_max=7)
    SpanLabelFactory(project=project, name="Factual error")
    SpanLabelFactory(project=project, name="Unsafe")
    return project


@pytest.fixture
def annotator(project):
    user = UserFactory(username="ann")
    MemberFactory(project=project, user=user, role=ProjectMember.Role.ANNOTATOR)
    return user


@pytest.fixture
def outsider(db):
    return UserFactory(username="outsider")
