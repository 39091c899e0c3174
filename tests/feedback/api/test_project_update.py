"""Changing a project through the API keeps its queue right, as the admin does."""

import pytest
from django.urls import reverse

from feedback.models import ProjectMember, Task
from feedback.queue import task_claim_next
from tests.factories import MemberFactory, UserFactory, task_with_responses
from tests.feedback.api.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(project):
    user = UserFactory(username="boss")
    MemberFactory(project=project, user=user, role=ProjectMember.Role.ADMIN)
    return user


def annotator_named(project, name: str):
    user = UserFactory(username=name)
    MemberFactory(project=project, user=user, role=ProjectMember.Role.ANNOTATOR)
    return user


def patch(admin, project, **fields):
    url = reverse("api:project-detail", args=[project.pk])
    return client_for(admin).patch(url, fields, format="json")


def test_raising_annotators_per_task_through_the_api_reopens_full_tasks(project, admin):
    project.annotators_per_task = 1
    project.save()
    task = task_with_responses(project, "pair", 2, text="İstanbul 🚀 <script>x</script>")
    first, second = annotator_named(project, "ann1"), annotator_named(project, "ann2")
    assert task_claim_next(project=project, annotator=first).task == task
    assert task_claim_next(project=project, annotator=second) is None

    response = patch(admin, project, annotators_per_task=3)

    assert response.status_code == 200, response.content
    assert Task.objects.get(pk=task.pk).is_full is False
    project.refresh_from_db()
    assert task_claim_next(project=project, annotator=second).task == task


def test_lowering_annotators_per_task_through_the_api_closes_tasks_that_have_enough(project, admin):
    project.annotators_per_task = 3
    project.save()
    task = task_with_responses(project, "pair", 2)
    first, second = annotator_named(project, "ann1"), annotator_named(project, "ann2")
    task_claim_next(project=project, annotator=first)

    assert patch(admin, project, annotators_per_task=1).status_code == 200

    assert Task.objects.get(pk=task.pk).is_full is True
    project.refresh_from_db()
    assert task_claim_next(project=project, annotator=second) is None
