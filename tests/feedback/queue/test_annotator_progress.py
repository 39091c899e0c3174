"""The annotator's count of submitted tasks (the card's "You: n"), kept by database triggers
on the leases: every way a lease becomes submitted or stops being so moves it."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from feedback.models import Assignment, Project
from feedback.queue import task_claim_next, task_skip, task_submit
from feedback.selectors import annotator_place
from feedback.services import FeedbackInput, PairwiseInput
from tests.factories import task_with_responses

pytestmark = pytest.mark.django_db

A_BETTER = FeedbackInput(pairwise=PairwiseInput(choice="A", strength=2))
TIE = FeedbackInput(pairwise=PairwiseInput(choice="tie"))


def shown(project, annotator) -> int:
    return annotator_place(project=project, annotator=annotator).progress.done


def counted(project, annotator) -> int:
    return Assignment.objects.filter(
        project=project, annotator=annotator, status=Assignment.Status.SUBMITTED
    ).count()


def test_the_count_follows_submits_changes_skips_late_answers_and_deletes(project, annotator):
    tasks = [task_with_responses(project, "pair", 2) for _ in range(4)]
    now = timezone.now()
    steps = []

    def step(name: str) -> None:
        steps.append((name, shown(project, annotator), counted(project, annotator)))

    task_claim_next(project=project, annotator=annotator, now=now)
    step("claimed")
    task_submit(task=tasks[0], annotator=annotator, feedback=A_BETTER)
    step("submitted")
    task_submit(task=tasks[0], annotator=annotator, feedback=TIE)
    step("answer changed")
    task_claim_next(project=project, annotator=annotator, now=now)
    task_skip(task=tasks[1], annotator=annotator)
    step("skipped")
    task_submit(task=tasks[1], annotator=annotator, feedback=A_BETTER)
    step("skipped task answered after all")
    task_claim_next(project=project, annotator=annotator, now=now)
    task_claim_next(project=project, annotator=annotator, now=now + timedelta(days=1))
    task_submit(task=tasks[2], annotator=annotator, feedback=A_BETTER)
    step("lapsed lease answered late")
    tasks[0].delete()
    step("answered task deleted")

    assert steps == [
        ("claimed", 0, 0),
        ("submitted", 1, 1),
        ("answer changed", 1, 1),
        ("skipped", 1, 1),
        ("skipped task answered after all", 2, 2),
        ("lapsed lease answered late", 3, 3),
        ("answered task deleted", 2, 2),
    ]


def test_a_status_written_directly_is_counted_too(project, annotator):
    """The count is the database's: an UPDATE from anywhere (the admin, SQL) moves it."""
    task = task_with_responses(project, "pair", 2)
    task_claim_next(project=project, annotator=annotator)
    Assignment.objects.filter(task=task).update(status=Assignment.Status.SUBMITTED)
    assert shown(project, annotator) == 1
    Assignment.objects.filter(task=task).update(status=Assignment.Status.EXPIRED)
    assert shown(project, annotator) == 0


def test_a_project_with_counted_answers_can_be_deleted(project, annotator):
    task = task_with_responses(project, "pair", 2)
    task_claim_next(project=project, annotator=annotator)
    task_submit(task=task, annotator=annotator, feedback=A_BETTER)
    project.delete()
    assert not Project.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's TRUNCATE trigger")
def test_a_truncate_of_the_leases_empties_the_counts(project, annotator):
    task = task_with_responses(project, "pair", 2)
    task_claim_next(project=project, annotator=annotator)
    task_submit(task=task, annotator=annotator, feedback=A_BETTER)
    with connection.cursor() as cursor:
        # The test's transaction still holds the deferred foreign-key checks of its writes.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("TRUNCATE feedback_assignment CASCADE")
    assert shown(project, annotator) == 0
