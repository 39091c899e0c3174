"""Judge quality and agreement pages admit exactly whom their API admits.

API: admins and viewers read (200), annotators get 403, everyone else 404; being staff
grants nothing in a project one is not a member of.
"""

import pytest
from django.urls import reverse

from feedback.models import ProjectMember
from tests.factories import MemberFactory, UserFactory

pytestmark = pytest.mark.django_db

PAGES = ["annotate:judge-quality", "feedback:project-agreement"]
API = {
    "annotate:judge-quality": "api:judge-quality",
    "feedback:project-agreement": "api:project-agreement",
}


def user_with(project, role: str | None, **flags):
    user = UserFactory(**flags)
    if role is not None:
        MemberFactory(project=project, user=user, role=role)
    return user


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize(
    ("role", "flags", "status"),
    [
        (ProjectMember.Role.ADMIN, {}, 200),
        (ProjectMember.Role.VIEWER, {}, 200),
        (ProjectMember.Role.ANNOTATOR, {}, 403),
        (ProjectMember.Role.ANNOTATOR, {"is_staff": True}, 403),
        (None, {}, 404),
        (None, {"is_staff": True}, 404),
        (None, {"is_staff": True, "is_superuser": True}, 200),
    ],
)
def test_the_page_answers_as_its_api_does(client, project, page, role, flags, status):
    client.force_login(user_with(project, role, **flags))
    assert client.get(reverse(page, args=[project.pk])).status_code == status
    assert client.get(reverse(API[page], args=[project.pk])).status_code == status


def test_viewers_find_the_report_pages_a_click_from_their_project_list(client, project):
    client.force_login(user_with(project, ProjectMember.Role.VIEWER))
    html = client.get(reverse("annotate:project-list")).content.decode()
    dashboard = reverse("feedback:project-dashboard", args=[project.pk])
    assert dashboard in html
    assert reverse("annotate:project-jobs", args=[project.pk]) not in html
    assert f'href="{reverse("annotate:task-next", args=[project.pk])}"' not in html
    html = client.get(dashboard).content.decode()
    assert reverse("annotate:judge-quality", args=[project.pk]) in html
    assert reverse("feedback:project-agreement", args=[project.pk]) in html
    assert reverse("feedback:project-leaderboard", args=[project.pk]) in html
    assert reverse("annotate:project-jobs", args=[project.pk]) not in html
