"""Taking a task writes (a lease, a renewal), so only a POST with a CSRF token does it: a
GET that another site makes the annotator's browser send (a link, an image) takes nothing
and extends no lease."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from feedback.models import Assignment
from tests.factories import task_with_responses

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def task(project):
    return task_with_responses(project, "pair", 2, text="İstanbul 🚀 <script>alert(1)</script>")


def url(project) -> str:
    return f"/projects/{project.pk}/"


def test_a_get_of_the_workspace_takes_no_task(client, project, annotator, task):
    client.force_login(annotator)
    for headers in ({}, HTMX):
        response = client.get(url(project), **headers)
        assert response.status_code == 200
        assert f'hx-post="{url(project)}"' in response.content.decode()
    assert not Assignment.objects.exists()


def test_a_get_shows_the_held_task_without_renewing_its_lease(client, project, annotator, task):
    client.force_login(annotator)
    assert client.post(url(project), **HTMX).status_code == 200
    held = Assignment.objects.get()
    Assignment.objects.filter(pk=held.pk).update(leased_until=timezone.now() + timedelta(seconds=5))
    held.refresh_from_db()
    response = client.get(url(project))
    assert f'data-task-id="{task.pk}"' in response.content.decode()
    assert Assignment.objects.get().leased_until == held.leased_until


def test_a_lapsed_lease_is_not_shown_as_held(client, project, annotator, task):
    client.force_login(annotator)
    client.post(url(project), **HTMX)
    Assignment.objects.update(leased_until=timezone.now() - timedelta(seconds=1))
    assert f'data-task-id="{task.pk}"' not in client.get(url(project)).content.decode()


def test_a_post_takes_the_next_task(client, project, annotator, task):
    client.force_login(annotator)
    response = client.post(url(project), **HTMX)
    assert response.status_code == 200
    assert f'data-task-id="{task.pk}"' in response.content.decode()
    assert Assignment.objects.get().annotator == annotator


def test_a_post_without_the_csrf_token_is_refused(project, annotator, task):
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator)
    assert client.post(url(project), **HTMX).status_code == 403
    assert not Assignment.objects.exists()
