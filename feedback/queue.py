"""The annotation queue: hand tasks to annotators, take them back, record what became of them.

Each task goes to `project.annotators_per_task` different annotators. An Assignment row is
one annotator's lease on one task; Task.slots_taken counts the active and submitted leases
and Task.is_full says it reached the project's number, so finding work is one scan of a
partial index. Every change of slots_taken happens while the task row is locked (PostgreSQL
`FOR UPDATE`) or under a guarded `UPDATE ... WHERE is_full = false`, so concurrent
annotators never overfill a task. SQLite (the demo) has no row locks; it serialises writers,
and the guarded update and the unique constraints keep it correct there too.

Lock order, to stay free of deadlocks: an annotator's own assignment rows first, then task
rows, and task rows in id order when there are several.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from contextlib import nullcontext
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Value, When
from django.utils import timezone

from feedback.loop import loop_labels_committed
from feedback.models import Assignment, PairSelection, Project, Prompt, Submission, Task
from feedback.rows import columns, from_row, prepared_cursor
from feedback.services import FeedbackError, FeedbackInput, submission_create

Status = Assignment.Status

# How many lapsed leases one claim returns to the queue: bounded, so a claim stays fast.
EXPIRE_BATCH = 200
# At most one look for lapsed leases per this many seconds (per cache: process or Redis).
EXPIRE_PROBE_SECONDS = 5
# Tries, and the growing pause between them, while the open tasks left are all locked.
CLAIM_ATTEMPTS = 5
CLAIM_RETRY_SECONDS = 0.01


def _take_slot(task_id: int, annotators_per_task: int) -> bool:
    """Count one more annotator on the task unless it is full; False when it was full."""
    return bool(
        Task.objects.filter(pk=task_id, is_full=False).update(
            slots_taken=F("slots_taken") + 1,
            # SET reads the old row, so "old + 1 >= n" is "old >= n - 1".
            is_full=Case(
                When(slots_taken__gte=annotators_per_task - 1, then=Value(True)),
                default=Value(False),
            ),
        )
    )


def _free_slots(task_counts: Counter[int]) -> None:
    for task_id in sorted(task_counts):
        Task.objects.filter(pk=task_id).update(
            slots_taken=F("slots_taken") - task_counts[task_id], is_full=False
        )


@transaction.atomic
def leases_expire(*, now: datetime | None = None, limit: int = EXPIRE_BATCH) -> int:
    """Return lapsed leases (any project) to the queue; the number returned.

    Rows another transaction holds are skipped: that one is submitting or expiring them.
    """
    now = now or timezone.now()
    lapsed = list(
        Assignment.objects.select_for_update(skip_locked=True)
        .filter(status=Status.ACTIVE, leased_until__lt=now)
        .order_by("id")
        .values_list("pk", "task_id")[:limit]
    )
    if not lapsed:
        return 0
    Assignment.objects.filter(pk__any=[pk for pk, _ in lapsed]).update(
        status=Status.EXPIRED, finished_at=now
    )
    _free_slots(Counter(task_id for _, task_id in lapsed))
    return len(lapsed)


@transaction.atomic
def leases_release(
    *, project: Project, annotator: AbstractBaseUser, now: datetime | None = None
) -> int:
    """Return the annotator's live leases in the project to the queue (they left it, or
    no longer annotate), as if they had lapsed; the number returned."""
    held = list(
        Assignment.objects.select_for_update()
        .filter(project=project, annotator=annotator, status=Status.ACTIVE)
        .order_by("id")
        .values_list("pk", "task_id")
    )
    if not held:
        return 0
    Assignment.objects.filter(pk__any=[pk for pk, _ in held]).update(
        status=Status.EXPIRED, finished_at=now or timezone.now()
    )
    _free_slots(Counter(task_id for _, task_id in held))
    return len(held)


def task_claim_next(
    *, project: Project, annotator: AbstractBaseUser, now: datetime | None = None
) -> Assignment | None:
    """The annotator's current task in the project, or a new lease on the next one.

    The next task is the open task of highest priority (then oldest) the annotator has not
    had; None when there is none. A live lease is resumed and renewed, so a reload or a
    second tab shows the same task.
    """
    now = now or timezone.now()
    # Leases last minutes, so looking for lapsed ones every few seconds is soon enough; a
    # plain index probe then spares most looks the locking sweep.
    probe_key = f"prefhub:leases-expire-probe:{int(now.timestamp()) // EXPIRE_PROBE_SECONDS}"
    if cache.add(probe_key, True, timeout=2 * EXPIRE_PROBE_SECONDS) and (
        Assignment.objects.filter(status=Status.ACTIVE, leased_until__lt=now).exists()
    ):
        leases_expire(now=now)
    for attempt in range(CLAIM_ATTEMPTS):
        try:
            assignment = _claim(project, annotator, now)
        except IntegrityError:
            # Two requests of one annotator raced and the other took a lease first: resume it.
            continue
        # SKIP LOCKED finds nothing while other claims hold the last open tasks for a few
        # milliseconds; "no task left" is only true once no open task remains for us.
        if assignment is not None or not _open_tasks(project, annotator).exists():
            return assignment
        time.sleep(CLAIM_RETRY_SECONDS * (attempt + 1))
    return None


def _open_tasks(project: Project, annotator: AbstractBaseUser):
    """Tasks of the project that still need annotators and that the annotator has not had,
    less those a selection round holds for its judge or the judge settled."""
    had = Assignment.objects.filter(task=OuterRef("pk"), annotator=annotator).exclude(
        status=Status.EXPIRED
    )
    held = PairSelection.objects.filter(task=OuterRef("pk"), route__in=PairSelection.HELD)
    return (
        Task.objects.filter(project=project, is_full=False)
        .exclude(Exists(had))
        .exclude(Exists(held))
    )


def _claim(project: Project, annotator: AbstractBaseUser, now: datetime) -> Assignment | None:
    until = now + timedelta(minutes=project.lease_minutes)
    if connection.vendor == "postgresql":
        return _claim_in_one_statement(project, annotator, now, until)
    return _claim_step_by_step(project, annotator, now, until)


# Every annotator's next card starts here, so on PostgreSQL the claim is one statement: renew
# the annotator's live lease, or else lock the first open task they have not had (skipping
# tasks other claims hold locked), count the slot and insert the lease; then read the lease,
# its task and prompt. The CTEs see one snapshot; the unique constraints catch two claims of
# one annotator at once (IntegrityError: the caller resumes the other's lease).
_HELD_ROUTES = ", ".join(f"'{route}'" for route in PairSelection.HELD)
_ASSIGNMENT_COLUMNS = ", ".join(field.column for field in Assignment._meta.concrete_fields)
_CLAIM_SQL = f"""
WITH renewed AS (
    UPDATE feedback_assignment SET leased_until = %(until)s
    WHERE project_id = %(project)s AND annotator_id = %(annotator)s AND status = 'active'
    RETURNING {_ASSIGNMENT_COLUMNS}
), picked AS (
    SELECT t.id FROM feedback_task t
    WHERE NOT EXISTS (SELECT FROM renewed)
        AND t.project_id = %(project)s AND NOT t.is_full
        AND NOT EXISTS (
            SELECT FROM feedback_assignment a
            WHERE a.task_id = t.id AND a.annotator_id = %(annotator)s AND a.status <> 'expired'
        )
        AND NOT EXISTS (
            SELECT FROM feedback_pairselection s
            WHERE s.task_id = t.id AND s.route IN ({_HELD_ROUTES})
        )
    ORDER BY t.priority DESC, t.id
    LIMIT 1
    FOR UPDATE OF t SKIP LOCKED
), taken AS (
    UPDATE feedback_task t
    SET slots_taken = t.slots_taken + 1, is_full = t.slots_taken + 1 >= %(per_task)s
    FROM picked WHERE t.id = picked.id AND NOT t.is_full
    RETURNING t.id
), leased AS (
    INSERT INTO feedback_assignment
        (project_id, task_id, annotator_id, status, leased_until, created_at, finished_at)
    SELECT %(project)s, taken.id, %(annotator)s, 'active', %(until)s, %(now)s, NULL FROM taken
    RETURNING {_ASSIGNMENT_COLUMNS}
)
SELECT {columns(Assignment, "a")}, {columns(Task, "t")}, {columns(Prompt, "p")}
FROM (SELECT * FROM renewed UNION ALL SELECT * FROM leased) a
JOIN feedback_task t ON t.id = a.task_id
JOIN feedback_prompt p ON p.id = t.prompt_id
"""


def _claim_in_one_statement(
    project: Project, annotator: AbstractBaseUser, now: datetime, until: datetime
) -> Assignment | None:
    params = {
        "project": project.pk,
        "annotator": annotator.pk,
        "per_task": project.annotators_per_task,
        "now": now,
        "until": until,
    }
    # One statement needs no transaction of its own; inside a caller's, a savepoint lets the
    # caller go on after a unique violation (the retry in task_claim_next).
    in_savepoint = transaction.atomic() if connection.in_atomic_block else nullcontext()
    with in_savepoint, prepared_cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        row = cursor.fetchone()
    if row is None:
        return None
    first_task_column = len(Assignment._meta.concrete_fields)
    first_prompt_column = first_task_column + len(Task._meta.concrete_fields)
    assignment = from_row(Assignment, row[:first_task_column])
    task = from_row(Task, row[first_task_column:first_prompt_column])
    task.prompt = from_row(Prompt, row[first_prompt_column:])
    task.project = project
    assignment.task = task
    return assignment


@transaction.atomic
def _claim_step_by_step(
    project: Project, annotator: AbstractBaseUser, now: datetime, until: datetime
) -> Assignment | None:
    """The claim on SQLite (the demo), which serialises writers: the same steps, in turn."""
    current = (
        Assignment.objects.select_related("task__prompt")
        .filter(project=project, annotator=annotator, status=Status.ACTIVE)
        .first()
    )
    if current is not None:
        current.leased_until = until
        current.save(update_fields=["leased_until"])
        current.task.project = project
        return current
    task = (
        _open_tasks(project, annotator).order_by("-priority", "id").select_related("prompt").first()
    )
    if task is None or not _take_slot(task.pk, project.annotators_per_task):
        return None
    task.project = project
    return Assignment.objects.create(
        project=project, task=task, annotator=annotator, leased_until=until
    )


@transaction.atomic
def task_skip(*, task: Task, annotator: AbstractBaseUser, now: datetime | None = None) -> None:
    """Give back the annotator's lease on the task; they will not be offered it again."""
    assignment = (
        Assignment.objects.select_for_update()
        .filter(task=task, annotator=annotator, status=Status.ACTIVE)
        .first()
    )
    if assignment is None:
        raise FeedbackError("You hold no lease on this task, so there is nothing to skip.")
    assignment.status = Status.SKIPPED
    assignment.finished_at = now or timezone.now()
    assignment.save(update_fields=["status", "finished_at"])
    _free_slots(Counter([task.pk]))


def _lease_locked(
    task: Task, annotator: AbstractBaseUser, submit_key: uuid.UUID | None
) -> tuple[int | None, str | None, int | None]:
    """The annotator's lease on the task (locked), its status, and the answer already stored
    under the card's key: (None, None, None) without a lease that counts."""
    lock = " FOR UPDATE OF a" if connection.features.has_select_for_update else ""
    key_field = Submission._meta.get_field("submit_key")
    with prepared_cursor() as cursor:
        cursor.execute(
            "SELECT a.id, a.status, (SELECT s.id FROM feedback_submission s"
            "  WHERE s.task_id = a.task_id AND s.annotator_id = a.annotator_id"
            "  AND s.submit_key = %s)"
            " FROM feedback_assignment a"
            f" WHERE a.task_id = %s AND a.annotator_id = %s AND a.status <> 'expired'{lock}",
            [key_field.get_db_prep_value(submit_key, connection), task.pk, annotator.pk],
        )
        return cursor.fetchone() or (None, None, None)


@transaction.atomic
def task_submit(
    *,
    task: Task,
    annotator: AbstractBaseUser,
    feedback: FeedbackInput,
    duration_ms: int | None = None,
    submit_key: uuid.UUID | None = None,
    now: datetime | None = None,
) -> Submission:
    """Store the annotator's answer to a task they hold, skipped, or answered before.

    A first answer closes the lease; a later one replaces the answer and keeps the old one
    as history. If the lease lapsed or the task was skipped, the answer is taken only while
    the task still needs annotators. `submit_key` names the rendered card: an answer
    already stored under it is returned, not superseded by a copy (a double-click).
    Raises FeedbackError; on error nothing changes.
    """
    now = now or timezone.now()
    with prepared_cursor() as cursor:
        # The usual answer, to a live lease: marked submitted at once (its row stays locked).
        cursor.execute(
            "UPDATE feedback_assignment SET status = %s, finished_at = %s"
            " WHERE task_id = %s AND annotator_id = %s AND status = %s RETURNING id",
            [Status.SUBMITTED.value, now, task.pk, annotator.pk, Status.ACTIVE.value],
        )
        status = Status.ACTIVE if cursor.fetchone() is not None else None
    if status is None:
        assignment_id, status, stored_id = _lease_locked(task, annotator, submit_key)
        if submit_key is not None and stored_id is not None:
            return Submission.objects.get(pk=stored_id)
        if status in (None, Status.SKIPPED) and not _take_slot(
            task.pk, task.project.annotators_per_task
        ):
            raise FeedbackError(
                "Your answer was not saved: your lease on this task ran out and the task has "
                "enough annotators now. Skip to the next task."
            )
        if status is None:
            Assignment.objects.create(
                project_id=task.project_id,
                task=task,
                annotator=annotator,
                leased_until=now,
                status=Status.SUBMITTED,
                finished_at=now,
            )
        elif status != Status.SUBMITTED:
            Assignment.objects.filter(pk=assignment_id).update(
                status=Status.SUBMITTED, finished_at=now
            )
    submission = submission_create(
        task=task,
        annotator=annotator,
        feedback=feedback,
        duration_ms=duration_ms,
        submit_key=submit_key,
        # Every answer of an annotator goes through here and marks the lease submitted, so
        # only a submitted lease can have an answer to replace.
        first_answer=status != Status.SUBMITTED,
        savepoint=False,  # any error rolls back this whole function's transaction
    )
    if feedback.pairwise is not None:
        # After the commit, so that the count sees this label; robust: a failed check is
        # logged and the annotator's answer stands.
        project_id = task.project_id
        transaction.on_commit(lambda: loop_labels_committed(project_id=project_id), robust=True)
    return submission
