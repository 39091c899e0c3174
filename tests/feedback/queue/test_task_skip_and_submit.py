"""task_skip and task_submit: leases closed, slots given back, edits kept as history."""

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.models import Assignment, PairwiseFeedback, ProjectMember, Submission
from feedback.queue import task_claim_next, task_skip, task_submit
from feedback.services import FeedbackError, FeedbackInput, PairwiseInput
from tests.factories import MemberFactory, UserFactory, task_with_responses

pytestmark = pytest.mark.django_db

A_BETTER = FeedbackInput(pairwise=PairwiseInput(choice="A", strength=2))


def test_a_skip_is_recorded_and_the_task_goes_to_someone_else(project, annotator):
    task = task_with_responses(project, "pair", 2)
    task_claim_next(project=project, annotator=annotator)
    task_skip(task=task, annotator=annotator)

    assert Assignment.objects.get().status == Assignment.Status.SKIPPED
    assert task_claim_next(project=project, annotator=annotator) is None
    other = UserFactory()
    MemberFactory(project=project, user=other, role=ProjectMember.Role.ANNOTATOR)
    assert task_claim_next(project=project, annotator=other).task == task


def test_skipping_a_task_not_held_is_refused(project, annotator):
    task = task_with_responses(project, "pair", 2)
    with pytest.raises(FeedbackError):
        task_skip(task=task, annotator=annotator)


def test_submitting_closes_the_lease_and_stores_the_judgment(project, annotator):
    task = task_with_responses(project, "pair", 2)
    task_claim_next(project=project, annotator=annotator)
    submission = task_submit(task=task, annotator=annotator, feedback=A_BETTER, duration_ms=900)

    assignment = Assignment.objects.get()
    assert assignment.status == Assignment.Status.SUBMITTED and assignment.finished_at
    assert submission.pairwise.choice == "A" and submission.duration_ms == 900
    task.refresh_from_db()
    assert task.slots_taken == 1


def test_changing_a_submitted_answer_keeps_the_earlier_one_as_history(project, annotator):
    task = task_with_responses(project, "pair", 2)
    task_claim_next(project=project, annotator=annotator)
    first = task_submit(task=task, annotator=annotator, feedback=A_BETTER)
    second = task_submit(
        task=task, annotator=annotator, feedback=FeedbackInput(pairwise=PairwiseInput("tie"))
    )

    first.refresh_from_db()
    assert not first.is_current and second.supersedes == first
    assert list(PairwiseFeedback.objects.order_by("id").values_list("choice", flat=True)) == [
        "A",
        "tie",
    ]
    task.refresh_from_db()
    assert task.slots_taken == 1


def test_a_late_answer_is_taken_while_the_task_still_needs_annotators(project, annotator):
    task = task_with_responses(project, "pair", 2)
    now = timezone.now()
    task_claim_next(project=project, annotator=annotator, now=now)
    task_claim_next(project=project, annotator=annotator, now=now + timedelta(days=1))

    task_submit(task=task, annotator=annotator, feedback=A_BETTER)
    assert Submission.objects.filter(task=task, is_current=True).count() == 1
    task.refresh_from_db()
    assert (task.slots_taken, task.is_full) == (1, True)


def test_a_late_answer_to_a_task_that_went_to_others_is_refused(project, annotator):
    task = task_with_responses(project, "pair", 2)
    other = UserFactory()
    MemberFactory(project=project, user=other, role=ProjectMember.Role.ANNOTATOR)
    now = timezone.now()
    task_claim_next(project=project, annotator=annotator, now=now)
    task_claim_next(project=project, annotator=other, now=now + timedelta(days=1))

    with pytest.raises(FeedbackError, match="enough annotators"):
        task_submit(task=task, annotator=annotator, feedback=A_BETTER)
    assert not Submission.objects.exists()


def test_a_refused_answer_keeps_the_lease_open(project, annotator):
    task = task_with_responses(project, "pair", 2)
    task_claim_next(project=project, annotator=annotator)
    bad = FeedbackInput(pairwise=PairwiseInput(choice="tie", strength=3))
    with pytest.raises(FeedbackError):
        task_submit(task=task, annotator=annotator, feedback=bad)
    assert Assignment.objects.get().status == Assignment.Status.ACTIVE
