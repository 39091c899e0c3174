"""Writes to the feedback domain. Views, serializers, commands and tasks call these."""

from __future__ import annotations

import functools
import gc
import itertools
import logging
import random
import re
import threading
import uuid
from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError

from feedback.bulk import rows_insert
from feedback.models import (
    FeedbackKind,
    FreeTextFeedback,
    IdempotencyKey,
    Job,
    LoopConfig,
    PairwiseFeedback,
    PairwiseTally,
    Project,
    ProjectMember,
    Prompt,
    RankingEntry,
    RankingFeedback,
    RatingAspect,
    RatingFeedback,
    Response,
    Severity,
    SpanFeedback,
    SpanLabel,
    Submission,
    Task,
    TaskResponse,
)
from feedback.rows import instance_insert, prepared_cursor
from feedback.schemas import CandidateRow, ImportedRow, json_problem
from feedback.selectors import project_for_annotator

Row = TypeVar("Row", bound=BaseModel)
logger = logging.getLogger(__name__)


class FeedbackError(Exception):
    """A refused write. `errors` maps a field path (`spans[1].end`) to its messages."""

    def __init__(self, message: str, *, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}

    def __str__(self) -> str:
        if not self.errors:
            return self.message
        details = "; ".join(f"{path}: {' '.join(msgs)}" for path, msgs in self.errors.items())
        return f"{self.message} ({details})"


# --- Submitting feedback -------------------------------------------------------------


@dataclass(frozen=True)
class PairwiseInput:
    choice: str
    strength: int | None = None


@dataclass(frozen=True)
class RatingInput:
    response_id: int
    aspect_id: int
    value: int
    rationale: str = ""


@dataclass(frozen=True)
class SpanInput:
    response_id: int
    label_id: int
    start: int
    end: int
    severity: str = "minor"
    comment: str = ""


@dataclass(frozen=True)
class FreeTextInput:
    mode: str
    text: str
    response_id: int | None = None


@dataclass(frozen=True)
class FeedbackInput:
    """Everything one annotator or judge says about one task; any part may be empty."""

    pairwise: PairwiseInput | None = None
    ratings: Sequence[RatingInput] = ()
    ranking: Sequence[int] = ()  # response ids, best first
    spans: Sequence[SpanInput] = ()
    texts: Sequence[FreeTextInput] = ()
    # The source looked for spans: an empty `spans` is then an answer ("nothing wrong"),
    # the negative example a span model needs, not the absence of one.
    spans_checked: bool = False

    @property
    def kinds(self) -> set[FeedbackKind]:
        present = {
            FeedbackKind.PAIRWISE: self.pairwise is not None,
            FeedbackKind.RATING: bool(self.ratings),
            FeedbackKind.RANKING: bool(self.ranking),
            FeedbackKind.SPAN: bool(self.spans) or self.spans_checked,
            FeedbackKind.FREE_TEXT: bool(self.texts),
        }
        return {kind for kind, on in present.items() if on}


def _check(instance, path: str, errors: dict[str, list[str]], exclude: Sequence[str] = ()) -> bool:
    """Run field and cross-table validation; file messages under `path.field`. True if valid.

    Single-row rules are left to the database's constraints (checking each first would cost
    a query apiece); `_constraint_error` turns their violations into the same messages.
    """
    try:
        # In stages: clean() follows relations that clean_fields() proved to exist.
        instance.clean_fields(exclude=["submission", "ranking", *exclude])
        instance.clean()
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            key = path if name == "__all__" else f"{path}.{name}" if path else name
            errors.setdefault(key, []).extend(messages)
        return False
    return True


@functools.cache
def _constraint_messages() -> dict[str, str]:
    app = apps.get_app_config("feedback")
    return {
        constraint.name: str(constraint.violation_error_message)
        for model in app.get_models()
        for constraint in model._meta.constraints
    }


def _constraint_error(exc: IntegrityError, path: str) -> FeedbackError:
    """The violated constraint's own message, under the path of the record that broke it."""
    text = str(exc)
    for name, message in _constraint_messages().items():
        if re.search(rf"\b{name}\b", text):
            return FeedbackError(
                "The feedback was refused.", errors={path or "submission": [message]}
            )
    # Not one of ours: its text names tables and values, for the log and not the annotator.
    logger.error("feedback refused by the database at %r: %s", path, exc)
    return FeedbackError("The feedback could not be stored; try again or tell an admin.")


def submission_create(
    *,
    task: Task,
    feedback: FeedbackInput,
    annotator: AbstractBaseUser | None = None,
    judge=None,
    job: Job | None = None,
    duration_ms: int | None = None,
    submit_key: uuid.UUID | None = None,
    first_answer: bool = False,
    savepoint: bool = True,
) -> Submission:
    """Store one answer to a task, replacing (and keeping as history) the source's last one.

    `first_answer`: the caller knows the source has not answered the task, so no earlier
    answer is looked for (the database still refuses a second current one).
    Raises FeedbackError naming each bad field; on error nothing changes. `savepoint=False`
    spares two round trips inside a caller's transaction that any error ends anyway.
    """
    with transaction.atomic(savepoint=savepoint):
        return _submission_write(
            task=task,
            feedback=feedback,
            annotator=annotator,
            judge=judge,
            job=job,
            duration_ms=duration_ms,
            submit_key=submit_key,
            first_answer=first_answer,
        )


def _submission_write(
    *,
    task: Task,
    feedback: FeedbackInput,
    annotator: AbstractBaseUser | None,
    judge,
    job: Job | None,
    duration_ms: int | None,
    submit_key: uuid.UUID | None,
    first_answer: bool,
) -> Submission:
    if (annotator is None) == (judge is None):
        raise FeedbackError("Feedback comes from exactly one annotator or judge.")
    if not feedback.kinds:
        raise FeedbackError("The submission holds no feedback.")
    missing = feedback.kinds - set(task.project.feedback_kinds)
    if missing:
        names = ", ".join(sorted(kind.label for kind in missing))
        raise FeedbackError(f"The project does not collect {names}.")

    source_kind = "annotator" if annotator is not None else "judge"
    source = {source_kind: annotator if annotator is not None else judge}
    if annotator is not None and project_for_annotator(annotator, task.project_id) is None:
        raise FeedbackError(
            "The feedback was refused.",
            errors={"annotator": [f"{annotator} is not an annotator of this project."]},
        )
    previous = (
        None
        if first_answer
        else Submission.objects.select_for_update()
        .filter(task=task, is_current=True, **source)
        .first()
    )
    if previous is not None:
        previous.is_current = False
        previous.save(update_fields=["is_current"])
        replaced = PairwiseFeedback.objects.filter(submission=previous).first()
        if replaced is not None:
            _pairwise_tally_add(task, source_kind, replaced.choice, -1)
    submission = Submission(
        task=task,
        job=job,
        duration_ms=duration_ms,
        submit_key=submit_key,
        supersedes=previous,
        spans_checked=FeedbackKind.SPAN in feedback.kinds,
        **source,
    )
    errors: dict[str, list[str]] = {}
    sources = ["task", "annotator", "judge", "job", "supersedes"]  # given as saved objects
    if not _check(submission, "", errors, exclude=sources):
        raise FeedbackError("The feedback was refused.", errors=errors)
    records = _build_records(submission, feedback, errors)
    if errors:
        raise FeedbackError("The feedback was refused.", errors=errors)
    path = ""
    try:
        instance_insert(submission)
        for path, record in records:  # noqa: B007 (the handler names the failing record)
            instance_insert(record)
            if isinstance(record, RankingFeedback):
                RankingEntry.objects.bulk_create(
                    RankingEntry(ranking=record, response_id=response_id, rank=rank)
                    for rank, response_id in enumerate(feedback.ranking, start=1)
                )
    except IntegrityError as exc:
        # Leaving this function's atomic block with the error rolls the writes back.
        raise _constraint_error(exc, path) from exc
    if feedback.pairwise is not None:
        _pairwise_tally_add(task, source_kind, feedback.pairwise.choice, 1)
    return submission


def _pairwise_tally_add(task: Task, source: str, choice: str, votes: int) -> None:
    """Add `votes` (1, or -1 for a replaced answer) to the task's count of `choice` from
    `source` (annotator or judge), making the task's row on its first vote: one upsert,
    so two first votes at once both count. A count below zero breaks its constraint."""
    column = PairwiseTally.COLUMNS[(source, choice)]
    if votes < 0:  # the row is there (an upsert's new row would break the constraint)
        PairwiseTally.objects.filter(task=task).update(**{column: models.F(column) + votes})
        return
    table = PairwiseTally._meta.db_table
    links = TaskResponse._meta.db_table
    counts = ["%s" if name == column else "0" for name in PairwiseTally.COLUMNS.values()]
    with prepared_cursor() as cursor:  # each answer runs it: planned once per connection
        # Both databases (SQLite: the demo) read INSERT ... SELECT ... ON CONFLICT.
        cursor.execute(
            f"INSERT INTO {table} ({_TALLY_KEYS}, {', '.join(PairwiseTally.COLUMNS.values())})"
            f" SELECT %s, %s, %s, a.response_id, b.response_id, {', '.join(counts)}"
            f" FROM {links} a JOIN {links} b ON b.task_id = a.task_id AND b.position = 1"
            " WHERE a.task_id = %s AND a.position = 0"
            f" ON CONFLICT (task_id) DO UPDATE SET {column} = {table}.{column} + %s",
            [task.pk, task.project_id, task.prompt_id, votes, task.pk, votes],
        )


_TALLY_KEYS = "task_id, project_id, prompt_id, first_response_id, second_response_id"


def submission_feedback(submission: Submission) -> FeedbackInput:
    """A stored answer as input again, for a new answer that keeps it and adds to it."""
    pairwise = PairwiseFeedback.objects.filter(submission=submission).first()
    return FeedbackInput(
        pairwise=pairwise and PairwiseInput(pairwise.choice, pairwise.strength),
        ratings=[
            RatingInput(r.response_id, r.aspect_id, r.value, r.rationale)
            for r in submission.ratings.order_by("id")
        ],
        ranking=list(
            RankingEntry.objects.filter(ranking__submission=submission)
            .order_by("rank")
            .values_list("response_id", flat=True)
        ),
        spans=[
            SpanInput(s.response_id, s.label_id, s.start, s.end, s.severity, s.comment)
            for s in submission.spans.order_by("id")
        ],
        texts=[
            FreeTextInput(t.mode, t.text, t.response_id) for t in submission.texts.order_by("id")
        ],
        spans_checked=submission.spans_checked,
    )


def feedback_merge(kept: FeedbackInput, added: FeedbackInput) -> FeedbackInput:
    """`kept` with the kinds of `added` that it lacks: a judge's answer to a task grows
    kind by kind over jobs, and what it said before stays as it was."""
    new = added.kinds - kept.kinds

    def wanted(text: FreeTextInput) -> bool:
        # A rationale comes with its pairwise verdict; critiques and rewrites on their own.
        owner = FeedbackKind.PAIRWISE if text.mode == "rationale" else FeedbackKind.FREE_TEXT
        return owner in new

    return FeedbackInput(
        pairwise=added.pairwise if FeedbackKind.PAIRWISE in new else kept.pairwise,
        ratings=added.ratings if FeedbackKind.RATING in new else kept.ratings,
        ranking=added.ranking if FeedbackKind.RANKING in new else kept.ranking,
        spans=added.spans if FeedbackKind.SPAN in new else kept.spans,
        texts=[*kept.texts, *filter(wanted, added.texts)],
        spans_checked=kept.spans_checked or FeedbackKind.SPAN in new,
    )


def _build_records(
    submission: Submission, feedback: FeedbackInput, errors: dict[str, list[str]]
) -> list[tuple[str, models.Model]]:
    """The submission's unsaved records, each under its field path, once each is valid."""
    candidates: list[tuple[str, models.Model]] = []
    if feedback.pairwise is not None:
        pairwise = feedback.pairwise
        candidates.append(
            (
                "pairwise",
                PairwiseFeedback(
                    submission=submission, choice=pairwise.choice, strength=pairwise.strength
                ),
            )
        )
    candidates += [
        (
            f"ratings[{index}]",
            RatingFeedback(
                submission=submission,
                response_id=rating.response_id,
                aspect_id=rating.aspect_id,
                value=rating.value,
                rationale=rating.rationale,
            ),
        )
        for index, rating in enumerate(feedback.ratings)
    ]
    candidates += [
        (
            f"spans[{index}]",
            SpanFeedback(
                submission=submission,
                response_id=span.response_id,
                label_id=span.label_id,
                start=span.start,
                end=span.end,
                severity=span.severity,
                comment=span.comment,
            ),
        )
        for index, span in enumerate(feedback.spans)
    ]
    candidates += [
        (
            f"texts[{index}]",
            FreeTextFeedback(
                submission=submission, response_id=text.response_id, mode=text.mode, text=text.text
            ),
        )
        for index, text in enumerate(feedback.texts)
    ]
    records = [(path, record) for path, record in candidates if _check(record, path, errors)]
    if feedback.ranking:
        ranking = RankingFeedback(submission=submission)
        try:
            ranking.clean_entries(list(feedback.ranking))
            records.append(("ranking", ranking))
        except ValidationError as exc:
            for messages in exc.message_dict.values():
                errors.setdefault("ranking", []).extend(messages)
    return records


# --- Tasks ---------------------------------------------------------------------------


def task_layouts(project: Project) -> list[Task.Layout]:
    """Which task shapes a project needs, from the kinds of feedback it collects."""
    kinds = set(project.feedback_kinds)
    layouts = []
    if kinds & {FeedbackKind.RATING, FeedbackKind.SPAN} or (
        FeedbackKind.FREE_TEXT in kinds and (project.asks_critique or project.asks_rewrite)
    ):
        layouts.append(Task.Layout.SINGLE)
    if FeedbackKind.PAIRWISE in kinds:
        layouts.append(Task.Layout.PAIR)
    if FeedbackKind.RANKING in kinds:
        layouts.append(Task.Layout.LIST)
    return layouts


def layouts_planned_up_front(project: Project) -> list[Task.Layout]:
    """The layouts whose tasks are made when responses arrive (import, tasks_extend): all
    the project needs, but pairs when selection rounds pick them (`pairs_by_selection`)."""
    layouts = task_layouts(project)
    if Task.Layout.PAIR in layouts and pairs_by_selection(project):
        layouts.remove(Task.Layout.PAIR)
    return layouts


def tasks_plan(
    project: Project, response_ids: Sequence[int], layouts: Sequence[str] | None = None
) -> list[tuple[str, list[int]]]:
    """The tasks for one prompt's responses: (layout, response ids in display order).

    `layouts`: the layouts to plan, by default all the project needs (`task_layouts`).
    """
    plan: list[tuple[str, list[int]]] = []
    for layout in task_layouts(project) if layouts is None else layouts:
        if layout == Task.Layout.SINGLE:
            plan.extend((layout, [rid]) for rid in response_ids)
        elif layout == Task.Layout.PAIR:
            plan.extend((layout, list(pair)) for pair in itertools.combinations(response_ids, 2))
        elif len(response_ids) >= 2:
            ids = list(response_ids)
            size = project.ranking_size
            # Chunks of at most ranking_size; a last chunk of one joins the one before.
            chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
            if len(chunks) > 1 and len(chunks[-1]) == 1:
                chunks[-2:] = [chunks[-2][:-1], [chunks[-2][-1], *chunks[-1]]]
            plan.extend((layout, chunk) for chunk in chunks)
    return plan


# Seeds from the OS: unpredictable, and safe to share between threads (no state).
_SEEDS = random.SystemRandom()


class _Shuffler(threading.local):
    """A generator per thread, seeded again for each task: cheaper than a new one per
    task (an import makes one a row), and no two threads share its state."""

    def __init__(self) -> None:
        self.rng = random.Random()


_shuffler = _Shuffler()


def display_order(response_ids: Sequence[int]) -> tuple[list[int], int]:
    """The ids in a random display order, and the seed that gives it.

    Creation order would put the older response (the first model of a generation job) on
    the left of every pair; a fresh seed per task balances positions over tasks, and the
    stored seed and positions let exports and judge metrics report position bias.
    """
    seed = _SEEDS.getrandbits(31)
    rng = _shuffler.rng
    rng.seed(seed)  # as random.Random(seed)
    return rng.sample(response_ids, len(response_ids)), seed


def _tasks_shown(
    project: Project, prompt_ids: Sequence[int]
) -> dict[tuple[int, str], dict[frozenset[int], int]]:
    """The prompts' existing tasks: (prompt id, layout) -> {set of response ids: task id}.

    Call with the prompts locked (`_prompts_lock`), so that what is missing stays missing
    until this transaction creates it.
    """
    members: dict[int, set[int]] = defaultdict(set)
    layout_of: dict[int, tuple[int, str]] = {}
    for task_id, prompt_id, layout, response_id in TaskResponse.objects.filter(
        task__prompt_id__any=prompt_ids, task__project=project
    ).values_list("task_id", "task__prompt_id", "task__layout", "response_id"):
        members[task_id].add(response_id)
        layout_of[task_id] = (prompt_id, layout)
    shown: dict[tuple[int, str], dict[frozenset[int], int]] = defaultdict(dict)
    for task_id, key in sorted(layout_of.items()):
        shown[key].setdefault(frozenset(members[task_id]), task_id)
    return shown


def _prompts_lock(prompt_ids: Sequence[int]) -> None:
    # Two jobs finishing on the same prompts would both see the tasks missing.
    list(Prompt.objects.select_for_update().filter(pk__any=prompt_ids).values_list("pk"))


def _tasks_create(
    project: Project, planned: Sequence[tuple[int, str, Sequence[int]]]
) -> list[Task]:
    """Tasks for (prompt id, layout, response ids) rows, each in a fresh display order."""
    ordered = [(prompt_id, layout, *display_order(ids)) for prompt_id, layout, ids in planned]
    tasks = Task.objects.bulk_create(
        Task(project=project, prompt_id=prompt_id, layout=layout, display_seed=seed)
        for prompt_id, layout, _, seed in ordered
    )
    TaskResponse.objects.bulk_create(
        TaskResponse(task=task, response_id=response_id, position=position)
        for task, (_, _, ids, _) in zip(tasks, ordered, strict=True)
        for position, response_id in enumerate(ids)
    )
    return tasks


def pairs_by_selection(project: Project) -> bool:
    """Whether the project's pair tasks come only from selection rounds."""
    return LoopConfig.objects.filter(project=project, pairs_by_selection=True).exists()


@transaction.atomic
def tasks_extend(*, project: Project, prompt_ids: Sequence[int]) -> list[Task]:
    """Create the tasks each prompt's current responses need and it does not have yet.

    Plans tasks over the prompt's whole response set, so new responses are paired with
    the old ones too, and leaves out every planned task whose set of responses an existing
    task of that layout already shows. Running it twice creates nothing the second time.
    A project whose pairs come from selection (`pairs_by_selection`) gets no pair tasks
    here: n responses make n(n-1)/2 pairs, and only those a round picks become tasks.
    """
    _prompts_lock(prompt_ids)
    responses: dict[int, list[int]] = defaultdict(list)
    for prompt_id, response_id in (
        Response.objects.filter(prompt_id__any=prompt_ids)
        .order_by("id")
        .values_list("prompt_id", "id")
    ):
        responses[prompt_id].append(response_id)
    shown = _tasks_shown(project, prompt_ids)
    layouts = layouts_planned_up_front(project)
    planned = [
        (prompt_id, layout, ids)
        for prompt_id, ids in responses.items()
        for layout, ids in tasks_plan(project, ids, layouts)
        if frozenset(ids) not in shown[(prompt_id, layout)]
    ]
    return _tasks_create(project, planned)


@transaction.atomic
def pair_tasks_ensure(
    *, project: Project, pairs: Sequence[tuple[int, int]]
) -> tuple[list[int], int]:
    """The pair task of each (response id, response id) of the project, created when the
    pair has none: (task ids in the order of `pairs`, how many were created).

    How a selection round turns its picks into tasks: each new one shown in a random
    display order, as tasks_extend shows them, and a pair that already has a task keeps it,
    so a rerun creates nothing. Raises FeedbackError for responses of another project and
    pairs across prompts.
    """
    ids = sorted({response_id for pair in pairs for response_id in pair})
    prompt_of = dict(
        Response.objects.filter(pk__any=ids, prompt__project=project).values_list("pk", "prompt_id")
    )
    for index, (a, b) in enumerate(pairs):
        if a not in prompt_of or b not in prompt_of:
            raise FeedbackError(
                "Unknown response.",
                errors={f"pairs[{index}]": ["Both responses must be of this project."]},
            )
        if prompt_of[a] != prompt_of[b] or a == b:
            raise FeedbackError(
                "Not a pair.",
                errors={f"pairs[{index}]": ["Two different responses to one prompt."]},
            )
    prompt_ids = sorted({prompt_of[a] for a, _ in pairs})
    _prompts_lock(prompt_ids)
    shown = _tasks_shown(project, prompt_ids)
    missing: dict[frozenset[int], tuple[int, str, list[int]]] = {}
    for a, b in pairs:
        key = frozenset((a, b))
        if key not in shown[(prompt_of[a], Task.Layout.PAIR)]:
            missing.setdefault(key, (prompt_of[a], Task.Layout.PAIR, [a, b]))
    created = _tasks_create(project, list(missing.values()))
    for key, task in zip(missing, created, strict=True):
        shown[(task.prompt_id, Task.Layout.PAIR)][key] = task.pk
    task_ids = [shown[(prompt_of[a], Task.Layout.PAIR)][frozenset((a, b))] for a, b in pairs]
    return task_ids, len(created)


# --- Import --------------------------------------------------------------------------

# Rows read, checked and written at a time: an import's memory is a batch's, whatever the
# size of the file. Errors past ERRORS_KEPT are counted, not kept.
IMPORT_BATCH_ROWS = 5000
ERRORS_KEPT = 1000


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str
    unit: str = "line"  # Parquet has rows, not lines

    def __str__(self) -> str:
        return f"{self.unit} {self.line}, field '{self.field}': {self.message}"


class ImportRejected(FeedbackError):
    """A file refused whole; `row_errors` name each line and field (the first ERRORS_KEPT
    of them; `more` counts the rest)."""

    def __init__(self, source: str, row_errors: list[RowError], more: int = 0) -> None:
        self.source = source
        self.row_errors = row_errors
        total = len(row_errors) + more
        shown = "\n".join(f"{source}: {error}" for error in row_errors[:50])
        unlisted = total - min(len(row_errors), 50)
        suffix = f"\n... and {unlisted} more" if unlisted > 0 else ""
        super().__init__(
            f"{source}: nothing imported, {total} error(s):\n{shown}{suffix}",
            errors={f"{e.unit} {e.line}.{e.field}": [e.message] for e in row_errors},
        )

    def __str__(self) -> str:
        return self.message


@dataclass
class ImportResult:
    prompts: int = 0
    responses: int = 0
    tasks: int = 0
    prompt_ids: Sequence[int] = field(default_factory=list)


def row_parse(schema: type[Row], line: int, raw: Any, unit: str) -> Row | list[RowError]:
    """One raw row parsed into `schema`, or every error it has."""
    if not isinstance(raw, dict):
        return [RowError(line, "row", "each row must be a JSON object", unit)]
    if problem := json_problem(raw):
        return [RowError(line, *problem, unit)]
    try:
        return schema.model_validate(raw)
    except PydanticError as exc:
        return [
            RowError(
                line,
                ".".join(str(part) for part in error["loc"]) or "row",
                error["msg"].removeprefix("Value error, "),
                unit,
            )
            for error in exc.errors()
        ]


def rows_parse(
    schema: type[Row], rows: Iterable[tuple[int, dict]], unit: str
) -> tuple[list[tuple[int, Row]], list[RowError]]:
    """Parse raw rows (line number, dict) into `schema`, collecting every error."""
    parsed: list[tuple[int, Row]] = []
    errors: list[RowError] = []
    for line, raw in rows:
        result = row_parse(schema, line, raw, unit)
        if isinstance(result, list):
            errors.extend(result)
        else:
            parsed.append((line, result))
    return parsed, errors


class _PromptsImport:
    """One import's state between batches: the errors so far and what was written."""

    def __init__(self, project: Project, unit: str) -> None:
        self.project = project
        self.unit = unit
        self.errors: list[RowError] = []
        self.errors_more = 0
        # Sorted, as ids come from a sequence: which line wrote each prompt, for repeats.
        self.prompt_ids: array[int] = array("q")
        self.prompt_lines: array[int] = array("q")
        self.responses = 0
        self.tasks = 0
        self.layouts = layouts_planned_up_front(project)
        # As text: psycopg writes a datetime into COPY at a few microseconds a row.
        self.now = timezone.now().isoformat()

    def error(self, error: RowError) -> None:
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append(error)
        else:
            self.errors_more += 1

    def batch(self, items: Sequence[tuple[int, dict] | RowError]) -> None:
        """Check a batch of rows and write the good ones. Rows are written even after an
        error, so that an id repeated further on is still found; the caller's
        transaction then rolls all of it back."""
        parsed: list[tuple[int, ImportedRow]] = []
        for item in items:
            if isinstance(item, RowError):
                self.error(item)
                continue
            result = row_parse(ImportedRow, *item, self.unit)
            if isinstance(result, list):
                for error in result:
                    self.error(error)
            else:
                parsed.append((item[0], result))
        parsed = self._without_taken_ids(parsed)
        prompt_ids = rows_insert(
            Prompt,
            ("project_id", "external_id", "text", "messages", "metadata", "created_at"),
            [
                (
                    self.project.pk,
                    row.id,
                    row.prompt_text,
                    row.prompt_messages,
                    row.metadata,
                    self.now,
                )
                for _, row in parsed
            ],
        )
        self.prompt_ids.extend(prompt_ids)
        self.prompt_lines.extend(line for line, _ in parsed)
        response_rows = [
            (prompt_id, c.text, c.model, c.generation_params, self.now)
            for prompt_id, (_, row) in zip(prompt_ids, parsed, strict=True)
            for c in row.responses
        ]
        response_ids = rows_insert(
            Response,
            ("prompt_id", "text", "model_name", "generation_params", "created_at"),
            response_rows,
        )
        self.responses += len(response_ids)
        by_prompt: dict[int, list[int]] = defaultdict(list)
        for (prompt_id, *_), response_id in zip(response_rows, response_ids, strict=True):
            by_prompt[prompt_id].append(response_id)
        self._tasks_write(by_prompt)

    def _without_taken_ids(
        self, parsed: list[tuple[int, ImportedRow]]
    ) -> list[tuple[int, ImportedRow]]:
        """The rows whose id the project has not got, each other's error for the rest."""
        owner = dict(
            Prompt.objects.filter(
                project=self.project,
                external_id__any={row.id for _, row in parsed if row.id},
            )
            .exclude(external_id="")
            .values_list("external_id", "pk")
        )
        seen: dict[str, int] = {}
        kept = []
        for line, row in parsed:
            if row.id in owner:
                index = bisect_left(self.prompt_ids, owner[row.id])
                if index < len(self.prompt_ids) and self.prompt_ids[index] == owner[row.id]:
                    first = self.prompt_lines[index]
                    message = f"'{row.id}' repeats {self.unit} {first}"
                else:
                    message = f"prompt '{row.id}' already exists"
                self.error(RowError(line, "id", message, self.unit))
            elif row.id and row.id in seen:
                message = f"'{row.id}' repeats {self.unit} {seen[row.id]}"
                self.error(RowError(line, "id", message, self.unit))
            else:
                seen[row.id] = line
                kept.append((line, row))
        return kept

    def _tasks_write(self, responses: dict[int, list[int]]) -> None:
        planned = [
            (prompt_id, layout, *display_order(ids))
            for prompt_id, response_ids in responses.items()
            for layout, ids in tasks_plan(self.project, response_ids, self.layouts)
        ]
        task_ids = rows_insert(
            Task,
            (
                "project_id",
                "prompt_id",
                "layout",
                "priority",
                "slots_taken",
                "is_full",
                "display_seed",
                "created_at",
            ),
            [
                (self.project.pk, prompt_id, layout, 0.0, 0, False, seed, self.now)
                for prompt_id, layout, _, seed in planned
            ],
        )
        rows_insert(
            TaskResponse,
            ("task_id", "response_id", "position"),
            [
                (task_id, response_id, position)
                for task_id, (_, _, ids, _) in zip(task_ids, planned, strict=True)
                for position, response_id in enumerate(ids)
            ],
        )
        self.tasks += len(task_ids)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off for the duration: an import makes ~30 objects a row
    (parsed JSON, pydantic models, rows to write) that live for a batch, and the collector
    kept scanning them and the whole heap, a third of the import's CPU time. Process-wide,
    so other threads of the worker run without it meanwhile too."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@transaction.atomic
def prompts_import(
    *,
    project: Project,
    rows: Iterable[tuple[int, dict] | RowError],
    source: str = "import",
    unit: str = "line",
) -> ImportResult:
    """Import prompts with their responses and create their tasks, all or nothing.

    `rows` yields (line number, raw dict) as the readers in feedback.io produce them, or a
    RowError for a line a reader could not read. Works through IMPORT_BATCH_ROWS rows at a
    time, so a file of any size imports in the memory of a batch; any error rolls back
    every batch written before it, and ImportRejected names each line and field.
    """
    state = _PromptsImport(project, unit)
    items = iter(rows)
    with _collector_paused():
        while batch := list(itertools.islice(items, IMPORT_BATCH_ROWS)):
            state.batch(batch)
            gc.collect(1)  # the batch's own cycles, if any; older objects are not scanned
    if state.errors:
        errors = sorted(state.errors, key=lambda e: e.line)
        raise ImportRejected(source, errors, more=state.errors_more)
    if not state.prompt_ids:
        raise ImportRejected(source, [RowError(0, "file", "no rows found")])
    if state.responses:
        _score_new_responses(project)
    return ImportResult(
        prompts=len(state.prompt_ids),
        responses=state.responses,
        tasks=state.tasks,
        prompt_ids=state.prompt_ids,
    )


@dataclass
class ResponsesResult:
    responses: int = 0
    tasks: int = 0
    response_ids: list[int] = field(default_factory=list)


@transaction.atomic
def responses_bulk_create(
    *,
    project: Project,
    rows: Iterable[tuple[int, dict]],
    create_tasks: bool = True,
    source: str = "request",
) -> ResponsesResult:
    """Add candidate responses to the project's prompts in one transaction, all or nothing.

    Every row is checked before anything is written; errors name the row and the field.
    With `create_tasks`, each prompt's new responses get the tasks the project collects on.
    """
    parsed, errors = rows_parse(CandidateRow, rows, "row")
    prompts = Prompt.objects.filter(project=project)
    ids = set(
        prompts.filter(pk__any={row.prompt_id for _, row in parsed if row.prompt_id}).values_list(
            "pk", flat=True
        )
    )
    by_external = dict(
        prompts.filter(
            external_id__in={row.prompt_external_id for _, row in parsed if row.prompt_external_id}
        ).values_list("external_id", "pk")
    )
    resolved: list[tuple[int, CandidateRow]] = []
    for line, row in parsed:
        if row.prompt_id is not None and row.prompt_id not in ids:
            errors.append(RowError(line, "prompt_id", f"no prompt {row.prompt_id} here", "row"))
        elif row.prompt_external_id is not None and row.prompt_external_id not in by_external:
            message = f"no prompt with external id '{row.prompt_external_id}' here"
            errors.append(RowError(line, "prompt_external_id", message, "row"))
        else:
            prompt_id = row.prompt_id or by_external[row.prompt_external_id]
            resolved.append((prompt_id, row))
    if errors:
        raise ImportRejected(source, sorted(errors, key=lambda e: e.line))
    if not resolved:
        raise ImportRejected(source, [RowError(0, "responses", "no rows found", "row")])
    responses = Response.objects.bulk_create(
        (
            Response(
                prompt_id=prompt_id,
                text=row.text,
                model_name=row.model,
                generation_params=row.generation_params,
            )
            for prompt_id, row in resolved
        ),
        batch_size=2000,
    )
    tasks: list[Task] = []
    if create_tasks:
        prompt_ids = sorted({response.prompt_id for response in responses})
        tasks = tasks_extend(project=project, prompt_ids=prompt_ids)
    _score_new_responses(project)
    return ResponsesResult(
        responses=len(responses), tasks=len(tasks), response_ids=[r.pk for r in responses]
    )


def _score_new_responses(project: Project) -> None:
    """With an active reward model, imported responses are scored once committed."""
    from feedback.jobs import score_new_responses  # feedback.jobs builds on this module

    score_new_responses(project=project)


# --- Projects --------------------------------------------------------------------------


@dataclass(frozen=True)
class AspectInput:
    """A rating aspect as a form gives it: `id` None for a new one; `delete` removes it."""

    id: int | None
    name: str
    rubric: str = ""
    scale_min: int = 1
    scale_max: int = 5
    delete: bool = False


@dataclass(frozen=True)
class SpanLabelInput:
    """A span label as a form gives it: `id` None for a new one; `delete` removes it."""

    id: int | None
    name: str
    description: str = ""
    color: str = "#f59e0b"
    default_severity: str = Severity.MINOR
    delete: bool = False


@transaction.atomic
def project_create(
    *,
    creator: AbstractBaseUser,
    aspects: Sequence[AspectInput] = (),
    labels: Sequence[SpanLabelInput] = (),
    **fields,
) -> Project:
    """Create a project, with its aspects and labels; its creator becomes its first admin.

    All or nothing: raises FeedbackError naming each bad field (`aspects[1].scale_max`).
    """
    project = Project(**fields)
    _validate(project)
    project.save()
    ProjectMember.objects.create(project=project, user=creator, role=ProjectMember.Role.ADMIN)
    _project_parts_save(project, aspects, labels)
    return project


@transaction.atomic
def project_configure(
    *,
    project: Project,
    fields: dict[str, Any],
    aspects: Sequence[AspectInput] = (),
    labels: Sequence[SpanLabelInput] = (),
) -> Project:
    """Change a project's settings, aspects and labels together, all or nothing.

    Aspects and labels are listed in display order; ones not listed stay as they are. One
    that feedback uses is not removed, and an aspect's scale does not shrink past ratings
    given on it: the stored feedback would no longer fit its project. Raises FeedbackError
    naming each bad field (`aspects[0].scale_min`, `labels[1].name`).
    """
    errors: dict[str, list[str]] = {}
    # Both checked, so that the form shows every error at once; any error undoes all.
    for change in (
        lambda: project_update(project=project, **fields),
        lambda: _project_parts_save(project, aspects, labels),
    ):
        try:
            change()
        except FeedbackError as exc:
            errors.update(exc.errors or {"project": [exc.message]})
    if errors:
        raise FeedbackError("The project was refused.", errors=errors)
    return project


def _project_parts_save(
    project: Project, aspects: Sequence[AspectInput], labels: Sequence[SpanLabelInput]
) -> None:
    errors: dict[str, list[str]] = {}
    aspect_rows = _parts_prepare(
        project,
        RatingAspect,
        aspects,
        "aspects",
        ["name", "rubric", "scale_min", "scale_max"],
        errors,
        used_by=lambda aspect: aspect.ratings,
        noun="rating",
    )
    label_rows = _parts_prepare(
        project,
        SpanLabel,
        labels,
        "labels",
        ["name", "description", "color", "default_severity"],
        errors,
        used_by=lambda label: label.spans,
        noun="span",
    )
    for index, (aspect, given) in enumerate(aspect_rows):
        if aspect is None or aspect.pk is None or given.delete:
            continue
        # Ratings already given must stay on the scale.
        outside = aspect.ratings.exclude(value__range=(given.scale_min, given.scale_max)).count()
        if outside:
            errors.setdefault(f"aspects[{index}].scale_max", []).append(
                f"{outside} rating{'s' if outside > 1 else ''} given on {aspect.name} "
                f"fall{'' if outside > 1 else 's'} outside {given.scale_min}-{given.scale_max}."
            )
    if errors:
        raise FeedbackError("The project was refused.", errors=errors)
    path = "aspects"
    try:
        for path, rows in (("aspects", aspect_rows), ("labels", label_rows)):  # noqa: B007
            for row, given in rows:
                if row is not None and given.delete:
                    row.delete()
            for position, (row, _) in enumerate(r for r in rows if not r[1].delete):
                row.position = position
                row.save()
    except IntegrityError as exc:
        raise _constraint_error(exc, path) from exc


def _parts_prepare(
    project: Project,
    model: type[RatingAspect] | type[SpanLabel],
    given: Sequence[AspectInput] | Sequence[SpanLabelInput],
    path: str,
    fields: list[str],
    errors: dict[str, list[str]],
    *,
    used_by,
    noun: str,
) -> list[tuple[Any, Any]]:
    """(row with the given values set, given) per given row, checked: its fields, its
    name unique in the project, and removal only while no feedback uses it."""
    existing = {row.pk: row for row in model.objects.filter(project=project)}
    names: dict[str, int] = {}
    rows: list[tuple[Any, Any]] = []
    for index, item in enumerate(given):
        where = f"{path}[{index}]"
        row = existing.get(item.id) if item.id is not None else model(project=project)
        if row is None:
            errors.setdefault(f"{where}.name", []).append("Not part of this project.")
            rows.append((None, item))
            continue
        if item.delete:
            uses = used_by(row).count() if row.pk else 0
            if uses:
                errors.setdefault(f"{where}.name", []).append(
                    f"{uses} {noun}{'s' if uses > 1 else ''} use{'' if uses > 1 else 's'} "
                    f"{row.name}: it cannot be removed (rename it instead)."
                )
            rows.append((row, item))
            continue
        for name in fields:
            setattr(row, name, getattr(item, name))
        if item.name in names:
            errors.setdefault(f"{where}.name", []).append(
                f"Row {names[item.name] + 1} has this name too."
            )
        names.setdefault(item.name, index)
        try:
            row.full_clean(exclude=["position"])
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                key = where if name == NON_FIELD_ERRORS else f"{where}.{name}"
                errors.setdefault(key, []).extend(messages)
        rows.append((row, item))
    return rows


@transaction.atomic
def project_update(*, project: Project, **fields) -> Project:
    """Change a project's fields (or save changes already set on it) and keep its queue right.

    Every path (API, admin, shell) comes here, so that a new `annotators_per_task` reopens
    tasks that now need more annotators, and closes those that have enough.
    """
    for name, value in fields.items():
        setattr(project, name, value)
    _validate(project)
    # Locked, so that two concurrent updates cannot both miss the change.
    stored = Project.objects.select_for_update().values_list("annotators_per_task", flat=True)
    before = stored.get(pk=project.pk)
    project.save()
    if project.annotators_per_task != before:
        task_slots_recount(project=project)
    return project


@transaction.atomic
def task_slots_recount(*, project: Project) -> int:
    """Re-derive is_full after the project's annotators_per_task changed; tasks updated."""
    return Task.objects.filter(project=project).update(
        is_full=models.Case(
            models.When(slots_taken__gte=project.annotators_per_task, then=models.Value(True)),
            default=models.Value(False),
        )
    )


def pairwise_tally_rebuild(*, project: Project | None = None) -> None:
    """Count the current pairwise votes of `project` (None: of all) into PairwiseTally
    afresh: the migration's backfill and the benchmark's seeding, which store votes
    without `submission_create` (it keeps the counts vote by vote)."""
    table = PairwiseTally._meta.db_table
    links = TaskResponse._meta.db_table
    scope, kept, params = "", "", []
    if project is not None:
        scope, kept, params = "WHERE t.project_id = %s", "WHERE project_id = %s", [project.pk]
    counts = ", ".join(
        f"SUM(CASE WHEN u.{source}_id IS NOT NULL AND v.choice = %s THEN 1 ELSE 0 END)"
        for source, _ in PairwiseTally.COLUMNS
    )
    choices = [choice for _, choice in PairwiseTally.COLUMNS]
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} {kept}", params)
        cursor.execute(
            f"INSERT INTO {table} ({_TALLY_KEYS}, {', '.join(PairwiseTally.COLUMNS.values())})"
            f" SELECT t.id, t.project_id, t.prompt_id, a.response_id, b.response_id, {counts}"
            f" FROM {PairwiseFeedback._meta.db_table} v"
            f" JOIN {Submission._meta.db_table} u ON u.id = v.submission_id AND u.is_current"
            f" JOIN {Task._meta.db_table} t ON t.id = u.task_id"
            f" JOIN {links} a ON a.task_id = t.id AND a.position = 0"
            f" JOIN {links} b ON b.task_id = t.id AND b.position = 1"
            f" {scope} GROUP BY t.id, t.project_id, t.prompt_id, a.response_id, b.response_id",
            [*choices, *params],
        )


# --- Members --------------------------------------------------------------------------


def _admins_left(project: Project, without: ProjectMember) -> int:
    """The project's other admins, their rows locked: two admins demoting each other at
    once must not leave the project with none."""
    return len(
        ProjectMember.objects.select_for_update()
        .filter(project=project, role=ProjectMember.Role.ADMIN)
        .exclude(pk=without.pk)
        .values_list("pk", flat=True)
    )


def _role_checked(role: str) -> str:
    if role not in ProjectMember.Role.values:
        allowed = ", ".join(ProjectMember.Role.values)
        raise FeedbackError("The role was refused.", errors={"role": [f"Use one of {allowed}."]})
    return role


@transaction.atomic
def member_add(*, project: Project, username: str, role: str) -> ProjectMember:
    """Give the user called `username` a role in the project."""
    _role_checked(role)
    user_model = get_user_model()
    user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username.strip()}).first()
    if user is None:
        raise FeedbackError(
            "The member was refused.",
            errors={"username": [f"No user is called {username.strip()!r}."]},
        )
    current = ProjectMember.objects.filter(project=project, user=user).first()
    if current is not None:
        raise FeedbackError(
            "The member was refused.",
            errors={"username": [f"{username} is already a member, as {current.role}."]},
        )
    return ProjectMember.objects.create(project=project, user=user, role=role)


@transaction.atomic
def member_set_role(*, member: ProjectMember, role: str) -> ProjectMember:
    """Change a member's role; the project's last admin stays one. A member who no longer
    annotates gives their open task back to the queue."""
    _role_checked(role)
    demoted = member.role == ProjectMember.Role.ADMIN and role != ProjectMember.Role.ADMIN
    if demoted and not _admins_left(member.project, member):
        raise FeedbackError(
            "The role was refused.",
            errors={"role": [f"{member.user} is the only admin: make another one first."]},
        )
    member.role = role
    member.save(update_fields=["role"])
    if role == ProjectMember.Role.VIEWER:
        _leases_give_back(member)
    return member


@transaction.atomic
def member_remove(*, member: ProjectMember) -> None:
    """Take a member out of the project; their answers stay, their open task goes back."""
    if member.role == ProjectMember.Role.ADMIN and not _admins_left(member.project, member):
        raise FeedbackError(
            "The member was not removed.",
            errors={"role": [f"{member.user} is the only admin: make another one first."]},
        )
    _leases_give_back(member)
    member.delete()


def _leases_give_back(member: ProjectMember) -> None:
    from feedback.queue import leases_release  # the queue imports this module

    leases_release(project=member.project, annotator=member.user)


def _validate(instance) -> None:
    try:
        instance.full_clean()
    except ValidationError as exc:
        raise FeedbackError("The project was refused.", errors=exc.message_dict) from exc


# --- Idempotency keys ------------------------------------------------------------------

# How long a key's answer is kept for replay (Stripe keeps 24 hours too); later the key
# may be used again.
IDEMPOTENCY_KEY_RETENTION = timedelta(hours=24)


class IdempotencyKeyReused(FeedbackError):
    """The key was already used for another request (another endpoint or body)."""


def idempotency_key_take(
    *,
    user: AbstractBaseUser,
    key: str,
    endpoint: str,
    fingerprint: str,
    now: datetime | None = None,
) -> tuple[IdempotencyKey, bool]:
    """(row, True) for a new key, (stored row, False) for one already answered.

    Call inside the transaction that writes, then `idempotency_key_finish` in it: the new
    row commits with the writes or not at all. A concurrent request with the same key
    waits here on the unique index until this one ends. Raises IdempotencyKeyReused when
    the stored key came with another endpoint or body.
    """
    now = now or timezone.now()
    IdempotencyKey.objects.filter(
        user=user, created_at__lt=now - IDEMPOTENCY_KEY_RETENTION
    ).delete()
    try:
        with transaction.atomic():
            row = IdempotencyKey.objects.create(
                user=user, key=key, endpoint=endpoint, fingerprint=fingerprint, created_at=now
            )
        return row, True
    except IntegrityError:
        stored = IdempotencyKey.objects.get(user=user, key=key)
    if (stored.endpoint, stored.fingerprint) != (endpoint, fingerprint):
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for another request.",
            errors={
                "Idempotency-Key": [
                    f"Used for {stored.endpoint} with another body; send a new key "
                    "for a new request."
                ]
            },
        )
    return stored, False


def idempotency_key_finish(*, record: IdempotencyKey, status: int, body: Any) -> None:
    """Keep the answer that a retry with the key will get."""
    record.response_status, record.response_body = status, body
    record.save(update_fields=["response_status", "response_body"])
