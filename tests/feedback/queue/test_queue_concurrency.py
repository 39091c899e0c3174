"""Many annotators asking at once on PostgreSQL: no task twice, no task over its overlap."""

import threading
import time
from collections import Counter

import pytest
from django.db import connection

from feedback.models import Assignment, ProjectMember, Submission
from feedback.queue import task_claim_next, task_skip, task_submit
from feedback.services import FeedbackInput, PairwiseInput
from tests.factories import MemberFactory, ProjectFactory, UserFactory, task_with_responses

OVERLAP = 3
ANNOTATORS = 20
TASKS = 25


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_twenty_annotators_at_once_never_share_a_task_twice_or_overfill_it():
    if connection.vendor != "postgresql":
        pytest.skip("row locks are a PostgreSQL feature")
    project = ProjectFactory(annotators_per_task=OVERLAP)
    tasks = [task_with_responses(project, "pair", 2) for _ in range(TASKS)]
    users = [UserFactory() for _ in range(ANNOTATORS)]
    for user in users:
        MemberFactory(project=project, user=user, role=ProjectMember.Role.ANNOTATOR)

    start = threading.Barrier(ANNOTATORS)
    served: dict[int, list[int]] = {}
    failures: list[BaseException] = []

    def work(index: int, user) -> None:
        try:
            start.wait()
            served[user.pk] = []
            while True:
                assignment = task_claim_next(project=project, annotator=user)
                if assignment is None:
                    # Nothing for them now. A lease someone still holds may yet be skipped
                    # and put back, so they ask again, as the workspace's user would, until
                    # no lease is left.
                    if not Assignment.objects.filter(project=project, status="active").exists():
                        break
                    time.sleep(0.01)
                    continue
                served[user.pk].append(assignment.task_id)
                if (index + len(served[user.pk])) % 5 == 0:
                    task_skip(task=assignment.task, annotator=user)
                else:
                    feedback = FeedbackInput(pairwise=PairwiseInput(choice="A", strength=1))
                    task_submit(task=assignment.task, annotator=user, feedback=feedback)
        except BaseException as exc:  # reported below, from the test's own thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i, u)) for i, u in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not failures, failures
    for user_tasks in served.values():
        assert len(user_tasks) == len(set(user_tasks))
    per_task = Counter(
        Submission.objects.filter(task__project=project, is_current=True).values_list(
            "task_id", flat=True
        )
    )
    assert max(per_task.values()) <= OVERLAP
    # With 20 annotators and skips put back, every task ends with exactly its overlap.
    assert per_task == {task.pk: OVERLAP for task in tasks}
    assert not Assignment.objects.filter(status=Assignment.Status.ACTIVE).exists()
