import pytest

from feedback.models import ProjectMember
from feedback.selectors import member_role, projects_for_user
from tests.factories import MemberFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_annotator_sees_only_the_projects_it_belongs_to():
    mine, other = ProjectFactory(), ProjectFactory()
    user = UserFactory()
    MemberFactory(project=mine, user=user)
    assert list(projects_for_user(user)) == [mine]
    assert member_role(user, other) is None


def test_each_member_has_its_role():
    project = ProjectFactory()
    for role in ProjectMember.Role:
        user = UserFactory(username=f"u-{role}")
        MemberFactory(project=project, user=user, role=role)
        assert member_role(user, project) == role


def test_superuser_sees_every_project_as_admin():
    projects = {ProjectFactory(), ProjectFactory()}
    root = UserFactory(username="root", is_superuser=True)
    assert set(projects_for_user(root)) == projects
    assert member_role(root, next(iter(projects))) == ProjectMember.Role.ADMIN
