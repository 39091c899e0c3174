"""A response found clean is an answer: the span card submits with no span marked."""

import pytest

from feedback.models import Submission
from tests.annotate.cards import next_card
from tests.factories import MemberFactory, ProjectFactory, task_with_responses

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def test_a_span_card_submitted_with_no_span_records_a_clean_response(client, annotator):
    project = ProjectFactory(
        collects_pairwise=False, collects_rating=False, collects_free_text=False
    )
    MemberFactory(project=project, user=annotator)
    project.span_labels.create(name="Error")
    task = task_with_responses(project, "single", 1, texts=["Nothing wrong <b>here</b>."])
    client.force_login(annotator)
    client.post(f"/projects/{project.pk}/")
    response = client.post(
        f"/projects/{project.pk}/tasks/{task.pk}/submit/", {"spans": "[]"}, **HTMX
    )
    next_card(response)
    submission = Submission.objects.get()
    assert submission.spans_checked and not submission.spans.exists()


def test_a_rating_card_without_the_span_tool_does_not_claim_a_span_check(client, annotator):
    project = ProjectFactory(
        collects_pairwise=False, collects_spans=False, collects_free_text=False
    )
    MemberFactory(project=project, user=annotator)
    aspect = project.aspects.create(name="Helpfulness", scale_min=1, scale_max=5)
    task = task_with_responses(project, "single", 1)
    client.force_login(annotator)
    client.post(f"/projects/{project.pk}/")
    rid = task.links.get().response_id
    response = client.post(
        f"/projects/{project.pk}/tasks/{task.pk}/submit/",
        {f"rating-{rid}-{aspect.pk}": "4"},
        **HTMX,
    )
    next_card(response)
    assert not Submission.objects.get().spans_checked
