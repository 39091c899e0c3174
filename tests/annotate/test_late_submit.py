"""An answer sent after the lease lapsed is taken when it can be, and refused out loud.

The annotator kept working past the lease (a long task, a break): the answer is stored if
the task still needs annotators; if others filled it meanwhile, the card says so with a
422 in its error box and keeps the form. A request whose session ended gets 401, not the
login page, so the page can say the answer was not saved.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.models import Assignment, ProjectMember, Submission
from feedback.queue import leases_expire, task_claim_next
from tests.annotate.cards import next_card
from tests.factories import MemberFactory, UserFactory, task_with_responses

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
ANSWER = {"choice": "B", "strength": "2", "rationale": "İstanbul 🚀 <script>alert(1)</script>"}


@pytest.fixture
def lapsed(client, project, annotator):
    """The annotator's lease on a one-annotator task, lapsed and returned to the queue."""
    project.annotators_per_task = 1
    project.save()
    task = task_with_responses(project, "pair", 2, text="Ünïcode prompt: שלום")
    client.force_login(annotator)
    client.post(f"/projects/{project.pk}/")
    assert leases_expire(now=timezone.now() + timedelta(minutes=project.lease_minutes + 1)) == 1
    return task


def submit(client, project, task, **headers):
    return client.post(f"/projects/{project.pk}/tasks/{task.pk}/submit/", ANSWER, **headers)


def test_an_answer_after_the_lease_lapsed_is_stored_while_the_task_needs_it(
    client, project, annotator, lapsed
):
    next_card(submit(client, project, lapsed, **HTMX))
    submission = Submission.objects.get()
    assert (submission.annotator, submission.pairwise.choice) == (annotator, "B")
    assert submission.texts.get().text == ANSWER["rationale"]
    lapsed.refresh_from_db()
    assert (lapsed.slots_taken, lapsed.is_full) == (1, True)


def test_an_answer_after_someone_else_took_the_task_is_refused_in_the_card(
    client, project, annotator, lapsed
):
    other = UserFactory(username="other")
    MemberFactory(project=project, user=other, role=ProjectMember.Role.ANNOTATOR)
    assert task_claim_next(project=project, annotator=other).task == lapsed

    response = submit(client, project, lapsed, **HTMX)

    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#task-errors"
    html = response.content.decode()
    assert "was not saved" in html and "enough annotators" in html
    assert not Submission.objects.exists()
    lapsed.refresh_from_db()
    assert lapsed.slots_taken == 1
    assert Assignment.objects.get(annotator=other).status == Assignment.Status.ACTIVE
    # The message says to skip: that moves on to the next card.
    next_card(client.post(f"/projects/{project.pk}/tasks/{lapsed.pk}/skip/", **HTMX))


def test_a_task_never_leased_still_cannot_be_answered(client, project, annotator):
    task = task_with_responses(project, "pair", 2)
    client.force_login(annotator)
    assert submit(client, project, task, **HTMX).status_code == 404


def test_an_htmx_request_after_the_session_ended_gets_401_not_the_login_page(
    client, project, annotator, lapsed
):
    client.logout()
    response = submit(client, project, lapsed, **HTMX)
    assert response.status_code == 401
    assert not Submission.objects.exists()
    # A plain browser request still goes to the login page.
    assert submit(client, project, lapsed).status_code == 302
