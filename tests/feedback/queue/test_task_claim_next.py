"""task_claim_next: priority order, never the same task twice, overlap respected, leases lapse."""

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.models import Assignment, ProjectMember, Task
from feedback.queue import leases_expire, task_claim_next
from feedback.services import task_slots_recount
from tests.factories import MemberFactory, UserFactory, task_with_responses

pytestmark = pytest.mark.django_db


def annotators(project, count):
    users = [UserFactory() for _ in range(count)]
    for user in users:
        MemberFactory(project=project, user=user, role=ProjectMember.Role.ANNOTATOR)
    return users


def test_highest_priority_then_oldest_task_is_served_first(project, annotator):
    first = task_with_responses(project, "pair", 2)
    urgent = task_with_responses(project, "pair", 2)
    Task.objects.filter(pk=urgent.pk).update(priority=5.0)
    assert task_claim_next(project=project, annotator=annotator).task == urgent
    assert first.pk < urgent.pk


def test_asking_again_resumes_the_same_lease_and_renews_it(project, annotator):
    task_with_responses(project, "pair", 2)
    task_with_responses(project, "pair", 2)
    now = timezone.now()
    first = task_claim_next(project=project, annotator=annotator, now=now)
    later = now + timedelta(minutes=10)
    again = task_claim_next(project=project, annotator=annotator, now=later)
    assert again.pk == first.pk
    assert again.leased_until == later + timedelta(minutes=project.lease_minutes)


def test_a_task_goes_to_the_projects_number_of_annotators_and_no_more(project):
    project.annotators_per_task = 2
    project.save()
    task = task_with_responses(project, "pair", 2)
    a, b, c = annotators(project, 3)
    assert task_claim_next(project=project, annotator=a).task == task
    assert task_claim_next(project=project, annotator=b).task == task
    assert task_claim_next(project=project, annotator=c) is None
    task.refresh_from_db()
    assert (task.slots_taken, task.is_full) == (2, True)


def test_an_annotator_never_gets_a_task_they_had_before(project, annotator):
    project.annotators_per_task = 3
    project.save()
    task = task_with_responses(project, "pair", 2)
    Assignment.objects.create(
        project=project,
        task=task,
        annotator=annotator,
        status=Assignment.Status.SKIPPED,
        leased_until=timezone.now(),
    )
    assert task_claim_next(project=project, annotator=annotator) is None


def test_a_lapsed_lease_returns_the_task_to_the_queue(project):
    task = task_with_responses(project, "pair", 2)
    slow, other = annotators(project, 2)
    now = timezone.now()
    task_claim_next(project=project, annotator=slow, now=now)
    assert task_claim_next(project=project, annotator=other, now=now) is None

    after_lease = now + timedelta(minutes=project.lease_minutes, seconds=1)
    claimed = task_claim_next(project=project, annotator=other, now=after_lease)
    assert claimed.task == task
    statuses = dict(Assignment.objects.values_list("annotator__username", "status"))
    assert statuses == {slow.username: "expired", other.username: "active"}


def test_the_annotator_whose_lease_lapsed_may_get_the_task_again(project, annotator):
    task = task_with_responses(project, "pair", 2)
    now = timezone.now()
    task_claim_next(project=project, annotator=annotator, now=now)
    later = now + timedelta(minutes=project.lease_minutes + 1)
    assert task_claim_next(project=project, annotator=annotator, now=later).task == task
    assert Assignment.objects.filter(status="expired").count() == 1


def test_expiry_frees_one_slot_per_lapsed_lease(project):
    project.annotators_per_task = 3
    project.save()
    task = task_with_responses(project, "pair", 2)
    now = timezone.now()
    for user in annotators(project, 3):
        task_claim_next(project=project, annotator=user, now=now)
    assert leases_expire(now=now + timedelta(days=1)) == 3
    task.refresh_from_db()
    assert (task.slots_taken, task.is_full) == (0, False)


def test_raising_annotators_per_task_reopens_full_tasks(project, annotator):
    task = task_with_responses(project, "pair", 2)
    other = annotators(project, 1)[0]
    task_claim_next(project=project, annotator=annotator)
    assert task_claim_next(project=project, annotator=other) is None
    project.annotators_per_task = 2
    project.save()
    task_slots_recount(project=project)
    assert task_claim_next(project=project, annotator=other).task == task


def test_nothing_is_served_when_the_project_has_no_open_task(project, annotator):
    assert task_claim_next(project=project, annotator=annotator) is None
