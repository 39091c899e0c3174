"""The task form refuses what PostgreSQL or the parser would choke on, with a 422 naming the
field, and never shows the database's own error text."""

import pytest
from django.db import IntegrityError

from feedback.models import ProjectMember, Submission
from feedback.services import _constraint_error
from tests.factories import MemberFactory, ProjectFactory, task_with_responses

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def span_project(annotator):
    project = ProjectFactory(collects_pairwise=False, collects_rating=False)
    MemberFactory(project=project, user=annotator, role=ProjectMember.Role.ANNOTATOR)
    project.span_labels.create(name="Error")
    return project


def submit(client, project, task, data):
    client.post(f"/projects/{project.pk}/")
    return client.post(f"/projects/{project.pk}/tasks/{task.pk}/submit/", data, **HTMX)


def test_a_nul_character_in_an_answer_is_refused_naming_the_field(client, project, annotator):
    task = task_with_responses(project, "pair", 2, texts=["İstanbul 🌉", "مرحبا"])
    client.force_login(annotator)
    response = submit(
        client, project, task, {"choice": "A", "rationale": "<script>alert(1)</script>\x00 why"}
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "<code>rationale</code>" in html and "NUL" in html
    assert not Submission.objects.exists()


@pytest.mark.parametrize(
    "spans",
    [
        '[{"response_id": 1, "label_id": 1, "start": Infinity, "end": 3}]',
        '[{"response_id": 1, "label_id": 1, "start": NaN, "end": 3}]',
        '[{"response_id": 1, "label_id": 1, "start": 1e999, "end": 3}]',
        "[" * 5000 + "]" * 5000,
        '{"response_id": 1}',
        '["x"]',
    ],
    ids=["infinity", "nan", "overflow", "deep", "object", "not-objects"],
)
def test_span_json_that_cannot_be_spans_is_refused(client, span_project, annotator, spans):
    task = task_with_responses(span_project, "single", 1, texts=["Paris is in Spain."])
    client.force_login(annotator)
    response = submit(client, span_project, task, {"spans": spans})
    assert response.status_code == 422
    assert "<code>spans</code>" in response.content.decode()
    assert not Submission.objects.exists()


def test_an_unexpected_database_error_is_not_shown(caplog):
    raw = 'duplicate key value violates unique constraint "secret_index" DETAIL: Key (x)=(42)'
    error = _constraint_error(IntegrityError(raw), "texts[0]")
    assert "secret_index" not in str(error) and "42" not in str(error)
    assert "secret_index" in caplog.text  # the operator's log keeps it
