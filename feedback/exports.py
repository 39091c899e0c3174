"""Data-set exports: rows in the shapes trainers read, streamed from the database.

Each shape is a generator of plain dict rows over `.iterator(chunk_size=...)` queries whose
joins run in SQL, so memory stays flat whatever the size of the project; the writers in
`feedback.io` turn the rows into JSONL or Parquet bytes.

The rows follow what TRL checks (`trl/data_utils.py`, the trainers' `_prepare_dataset`):
one form per file (`prompt`, `chosen`, `rejected` all strings or all message lists), no null
or empty text, `content` always a string, in plain text the separating whitespace opening
the answer rather than closing the prompt, `margin` a float column of that exact name,
KTO's `label` a bool. Every column holds one type in every row and never null: `datasets`
infers a JSON Lines file's types block by block and fails when a column is null for a whole
block and typed in a later one.
"""

from __future__ import annotations

import gc
import itertools
import json
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from django.db.models import Q, QuerySet

from feedback.models import (
    FreeTextFeedback,
    PairwiseFeedback,
    Project,
    Prompt,
    RankingEntry,
    RatingAspect,
    RatingFeedback,
    Response,
    ResponseScore,
    RewardModel,
    SpanFeedback,
    TaskResponse,
)
from feedback.rewards import unscored_count
from feedback.selectors import current_from
from feedback.services import FeedbackError

CHUNK = 2000  # rows per server-side cursor fetch
LOOKUP_BATCH = 10_000  # records whose prompts and answers are read in one query each


class Shape(StrEnum):
    RAW = "raw"
    PAIRS = "pairs"
    UNPAIRED = "unpaired"
    RATINGS = "ratings"
    RANKINGS = "rankings"
    SPANS = "spans"


class Form(StrEnum):
    AUTO = "auto"
    TEXT = "text"
    CHAT = "chat"


class Aggregate(StrEnum):
    NONE = "none"  # one row per annotator's or judge's record
    MAJORITY = "majority"  # one row per task (per prompt for pairs from ratings)


class Ties(StrEnum):
    DROP = "drop"
    # TRL has no tie column: a kept tie would train "chosen beats rejected". For analysis.
    KEEP_AS_COLUMN = "keep_as_column"


class PairSource(StrEnum):
    PAIRWISE = "pairwise"
    RATINGS = "ratings"
    RANKINGS = "rankings"


class Sources(StrEnum):
    ALL = "all"
    ANNOTATORS = "annotators"
    JUDGES = "judges"


@dataclass(frozen=True)
class ExportOptions:
    """What to export. `aggregate`, `ties`, `min_agreement`, `pairs_from` and `margin` shape
    the pairs and unpaired exports; `aspect` picks one rating aspect for pairs from ratings;
    `seed` fixes the unpaired shape's row order."""

    shape: Shape = Shape.PAIRS
    form: Form = Form.AUTO
    aggregate: Aggregate = Aggregate.NONE
    ties: Ties = Ties.DROP
    min_agreement: float = 0.0
    pairs_from: PairSource = PairSource.PAIRWISE
    aspect: str = ""
    margin: bool = False
    sources: Sources = Sources.ALL
    seed: int = 0  # of the unpaired shape's shuffle
    scores: int | None = None  # a reward model of the project whose scores to add


def export_rows(*, project: Project, options: ExportOptions) -> Iterator[dict[str, Any]]:
    """Check the options against the project, then return the (lazy) rows.

    Raises FeedbackError before any row is read, so a view can still answer 400.
    """
    derived = options.shape in (Shape.PAIRS, Shape.UNPAIRED)
    if options.aggregate == Aggregate.MAJORITY and not derived:
        raise FeedbackError(
            "Aggregation applies to the pairs and unpaired shapes.",
            errors={"aggregate": ["Use aggregate=none for this shape."]},
        )
    if options.shape == Shape.UNPAIRED and options.ties == Ties.KEEP_AS_COLUMN:
        raise FeedbackError(
            "A tie labels neither response, so the unpaired shape cannot keep ties.",
            errors={"ties": ["Use ties=drop for the unpaired shape."]},
        )
    if not 0.0 <= options.min_agreement <= 1.0:
        raise FeedbackError(
            "Minimum agreement is a fraction.", errors={"min_agreement": ["Between 0 and 1."]}
        )
    if (
        options.aspect
        and not RatingAspect.objects.filter(project=project, name=options.aspect).exists()
    ):
        raise FeedbackError(
            "Unknown aspect.", errors={"aspect": [f"'{options.aspect}' is not an aspect here."]}
        )
    if options.scores is not None:
        _check_scores(project, options)
    chat = _chat_form(project, options.form)
    builders = {
        Shape.RAW: _raw_rows,
        Shape.PAIRS: _pair_rows,
        Shape.UNPAIRED: _unpaired_rows,
        Shape.RATINGS: _rating_rows,
        Shape.RANKINGS: _ranking_rows,
        Shape.SPANS: _span_rows,
    }
    rows = builders[options.shape](project, options, chat)
    if options.scores is not None:
        rows = _with_scores(rows, options.shape, options.scores)
    return _with_fewer_collections(rows)


def _check_scores(project: Project, options: ExportOptions) -> None:
    """Scores go into shapes that name responses, and only once every response has one:
    a column is never null."""
    if options.shape not in SCORE_COLUMNS:
        raise FeedbackError(
            "Scores are added to the pairs, unpaired, ratings, rankings and spans shapes.",
            errors={"scores": [f"The {options.shape} shape has no score columns."]},
        )
    if not RewardModel.objects.filter(project=project, pk=options.scores).exists():
        raise FeedbackError(
            "Unknown reward model.",
            errors={"scores": [f"No reward model {options.scores} in this project."]},
        )
    unscored = unscored_count(project=project, reward_model_id=options.scores)
    if unscored:
        raise FeedbackError(
            f"{unscored} responses have no score from reward model {options.scores} yet.",
            errors={"scores": ["Run a scoring job for the responses without a score first."]},
        )


def _pair_scores(row: dict[str, Any], scores: dict[int, float]) -> None:
    row["chosen_score"] = scores.get(row["chosen_response_id"])
    row["rejected_score"] = scores.get(row["rejected_response_id"])


def _response_score(row: dict[str, Any], scores: dict[int, float]) -> None:
    row["score"] = scores.get(row["response_id"])


def _completion_scores(row: dict[str, Any], scores: dict[int, float]) -> None:
    for completion in row["completions"]:
        completion["score"] = scores.get(completion["response_id"])


def _ranking_scores(row: dict[str, Any], scores: dict[int, float]) -> None:
    row["scores"] = [scores.get(response_id) for response_id in row["response_ids"]]


# Per shape: the response ids a row names, and how its score columns are added.
SCORE_COLUMNS: dict[Shape, tuple[Callable[[dict], Iterable[int]], Callable[..., None]]] = {
    Shape.PAIRS: (
        lambda row: (row["chosen_response_id"], row["rejected_response_id"]),
        _pair_scores,
    ),
    Shape.UNPAIRED: (lambda row: (row["response_id"],), _response_score),
    Shape.RATINGS: (lambda row: (c["response_id"] for c in row["completions"]), _completion_scores),
    Shape.RANKINGS: (lambda row: row["response_ids"], _ranking_scores),
    Shape.SPANS: (lambda row: (row["response_id"],), _response_score),
}


def _with_scores(
    rows: Iterator[dict[str, Any]], shape: Shape, reward_model_id: int
) -> Iterator[dict[str, Any]]:
    """The rows with the model's scores of the responses they name, read per batch."""
    response_ids, add = SCORE_COLUMNS[shape]
    for batch in _batched(rows, CHUNK):
        ids = {response_id for row in batch for response_id in response_ids(row)}
        scores = dict(
            ResponseScore.objects.filter(
                reward_model_id=reward_model_id, response_id__any=ids
            ).values_list("response_id", "score")
        )
        for row in batch:
            add(row, scores)
            yield row


class _CollectorThresholds:
    """Raises the garbage collector's thresholds while any export streams in the process.

    CPython collects its youngest generation every 700 allocations. An export allocates
    dozens of objects a row and holds a batch of rows, so the collector ran every few rows
    and walked the batch each time: a third of a JSONL export's CPU time, half of a Parquet
    one's. Only while rows stream: raised for good, it slowed the annotators' requests
    (annotate_load p95 up 3-6 ms). A download that stalls keeps them raised for the process
    until its response closes.
    """

    RAISED = (50_000, 20, 20)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams = 0
        self._saved = gc.get_threshold()

    @contextmanager
    def raised(self) -> Iterator[None]:
        with self._lock:
            if self._streams == 0:
                self._saved = gc.get_threshold()
                gc.set_threshold(*self.RAISED)
            self._streams += 1
        try:
            yield
        finally:
            with self._lock:
                self._streams -= 1
                if self._streams == 0:
                    gc.set_threshold(*self._saved)


_COLLECTOR = _CollectorThresholds()


def _with_fewer_collections(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    with _COLLECTOR.raised():
        yield from rows


def _chat_form(project: Project, form: Form) -> bool:
    """Whether the file is conversational: `auto` picks chat when some prompt needs it."""
    if form == Form.CHAT:
        return True
    needs_chat = any(
        not _single_user_turn(messages)
        for messages in Prompt.objects.filter(project=project, messages__isnull=False)
        .values_list("messages", flat=True)
        .iterator(chunk_size=CHUNK)
    )
    if form == Form.TEXT and needs_chat:
        raise FeedbackError(
            "The project has multi-turn chat prompts, which plain text cannot hold.",
            errors={"form": ["Use form=chat or form=auto."]},
        )
    return needs_chat


def _single_user_turn(messages: list[dict[str, str]]) -> bool:
    return len(messages) == 1 and messages[0]["role"] == "user"


# --- Common pieces ---------------------------------------------------------------------


class PromptRef(NamedTuple):
    id: int
    external_id: str
    text: str
    messages: list[dict[str, str]] | None


class Candidate(NamedTuple):
    id: int
    text: str
    model: str


PROMPT_FIELDS = ("id", "external_id", "text", "messages")
# Answers remembered per export; a few batches' worth, so memory stays flat.
COMPLETION_CACHE = 8192


def _prompt_fields(prefix: str) -> list[str]:
    return [f"{prefix}{name}" for name in PROMPT_FIELDS]


def _source(annotator: str | None, judge: str | None) -> str:
    return f"judge:{judge}" if judge is not None else f"annotator:{annotator}"


def _prompt_value(prompt: PromptRef, chat: bool) -> str | list[dict[str, str]]:
    if chat:
        return prompt.messages or [{"role": "user", "content": prompt.text}]
    # Text form only reaches single-turn prompts (see _chat_form).
    return prompt.messages[-1]["content"] if prompt.messages else prompt.text


def _prompt_chars(prompt: PromptRef) -> int:
    if prompt.messages:
        return sum(len(message["content"]) for message in prompt.messages)
    return len(prompt.text)


def _text_prompt_answer(prompt: str, answer: str) -> tuple[str, str]:
    """Move whitespace between prompt and answer to the answer's start, as TRL expects."""
    head = prompt.rstrip()
    body = answer.lstrip()
    gap = prompt[len(head) :] + answer[: len(answer) - len(body)]
    return head, (gap or " ") + body


def _completion(prompt: PromptRef, answer: str, chat: bool) -> tuple[Any, Any] | None:
    """(prompt, completion) in the file's form, or None when either is blank."""
    if not answer.strip():
        return None
    if chat:
        return _prompt_value(prompt, True), [{"role": "assistant", "content": answer}]
    head, completion = _text_prompt_answer(_prompt_value(prompt, False), answer)
    return (head, completion) if head else None


class _Completions:
    """`_completion` per (prompt, candidate), built once while its task's rows stream.

    A task's answers recur in every annotator's row: handing out the same objects also
    lets the Parquet writer convert each text once. Keyed by ids, since a chat prompt's
    messages are lists, which cannot be hashed. Cleared when full, so memory stays flat.
    """

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.built: dict[tuple[int, int], tuple[Any, Any] | None] = {}

    def __call__(self, prompt: PromptRef, candidate: Candidate) -> tuple[Any, Any] | None:
        key = (prompt.id, candidate.id)
        if key not in self.built:
            if len(self.built) >= COMPLETION_CACHE:
                self.built.clear()
            self.built[key] = _completion(prompt, candidate.text, self.chat)
        return self.built[key]


def _batched(rows: Iterable, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


# --- Votes: the common ground of pairwise choices, rankings and ratings --------------------


@dataclass(slots=True)
class Vote:
    """One source's preference between two candidates of a prompt.

    `winner` is 0 for a, 1 for b, None for a tie; `strength` feeds the margin. `group` is
    what majority aggregates over: the task, or the prompt for pooled ratings. `positions`
    are a's and b's places on the annotator's screen (0 first, on the left), -1 where the
    two were not shown together.
    """

    group: int
    prompt: PromptRef
    a: Candidate
    b: Candidate
    winner: int | None
    strength: float
    task_ids: tuple[int, ...]
    submission_ids: tuple[int, ...]
    record_ids: tuple[int, ...]
    sources: tuple[str, ...]
    positions: tuple[int, int] = (-1, -1)

    def oriented(self) -> Vote:
        """The same vote with the smaller response id as a, so votes on a pair line up."""
        if self.a.id < self.b.id:
            return self
        winner = None if self.winner is None else 1 - self.winner
        return Vote(
            self.group,
            self.prompt,
            self.b,
            self.a,
            winner,
            self.strength,
            self.task_ids,
            self.submission_ids,
            self.record_ids,
            self.sources,
            (self.positions[1], self.positions[0]),
        )


def majority(winners: list[int | None]) -> tuple[int | None, float]:
    """The most frequent outcome and its share; a draw for first place is a tie (None)."""
    ranked = Counter(winners).most_common()
    top, count = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == count:
        top = None
    return top, count / len(winners)


@dataclass(slots=True)
class Preference:
    """A decided pair, from one vote or a majority of votes."""

    prompt: PromptRef
    chosen: Candidate
    rejected: Candidate
    tie: bool
    margin: float
    votes: list[Vote]
    agreement: float
    chosen_position: int  # where the chosen one was shown (see Vote.positions)


def _preferences(votes: Iterator[Vote], options: ExportOptions) -> Iterator[Preference]:
    if options.aggregate == Aggregate.NONE:
        for vote in votes:
            yield _preference([vote], vote.winner, 1.0)
        return
    # Majority: the vote streams arrive grouped by task (or prompt); pairs line up inside.
    for _, group in itertools.groupby(votes, key=lambda vote: vote.group):
        by_pair: dict[tuple[int, int], list[Vote]] = defaultdict(list)
        for vote in group:
            oriented = vote.oriented()
            by_pair[(oriented.a.id, oriented.b.id)].append(oriented)
        for pair_votes in by_pair.values():
            winner, agreement = majority([vote.winner for vote in pair_votes])
            yield _preference(pair_votes, winner, agreement)


def _preference(votes: list[Vote], winner: int | None, agreement: float) -> Preference:
    first = votes[0]
    if winner is None:
        return Preference(
            first.prompt, first.a, first.b, True, 0.0, votes, agreement, first.positions[0]
        )
    strengths = [vote.strength for vote in votes if vote.winner == winner]
    chosen, rejected = (first.a, first.b) if winner == 0 else (first.b, first.a)
    margin = sum(strengths) / len(strengths)
    return Preference(
        first.prompt, chosen, rejected, False, margin, votes, agreement, first.positions[winner]
    )


def _kept(preferences: Iterator[Preference], options: ExportOptions) -> Iterator[Preference]:
    for preference in preferences:
        if preference.tie and options.ties == Ties.DROP:
            continue
        if preference.agreement < options.min_agreement:
            continue
        yield preference


def _trace(preference: Preference) -> dict[str, Any]:
    """Ids and counts that lead from a row back to the stored records."""
    votes = preference.votes
    if len(votes) == 1:
        vote = votes[0]
        task_ids, submission_ids = vote.task_ids, vote.submission_ids
        record_ids, sources = vote.record_ids, vote.sources
    else:
        task_ids = tuple(tid for vote in votes for tid in vote.task_ids)
        submission_ids = tuple(sid for vote in votes for sid in vote.submission_ids)
        record_ids = tuple(rid for vote in votes for rid in vote.record_ids)
        sources = tuple(source for vote in votes for source in vote.sources)
    return {
        "prompt_id": preference.prompt.id,
        "prompt_external_id": preference.prompt.external_id,
        "task_ids": _distinct(task_ids),
        "submission_ids": _distinct(submission_ids),
        "record_ids": _distinct(record_ids),
        "sources": _distinct(sources),
        "votes": len(votes),
        "agreement": preference.agreement,
    }


def _distinct(values: tuple) -> list:
    """Sorted without repeats; most rows trace back to one record."""
    return [values[0]] if len(values) == 1 else sorted(set(values))


def _votes(project: Project, options: ExportOptions) -> Iterator[Vote]:
    sources = {
        PairSource.PAIRWISE: _pairwise_votes,
        PairSource.RANKINGS: _ranking_votes,
        PairSource.RATINGS: _rating_votes,
    }
    return sources[options.pairs_from](project, options)


class PairwiseRecord(NamedTuple):
    """One pairwise choice with its task's prompt and two candidates (a shown first)."""

    record_id: int
    winner: int | None  # 0 for a, 1 for b, None for a tie
    strength: float
    submission_id: int
    task_id: int
    source: str
    prompt: PromptRef
    a: Candidate
    b: Candidate


WINNERS = {"A": 0, "B": 1, "tie": None}


def _pairwise_batches(project: Project, options: ExportOptions) -> Iterator[list[PairwiseRecord]]:
    """Pairwise choices in batches. The cursor reads ids only: texts are read once per
    batch, not once per record, because a task's prompt and responses repeat in every
    annotator's record of it, and looking up a batch's tasks by index costs less than
    joining every task's responses before sorting."""
    ordering = ("id",) if options.aggregate == Aggregate.NONE else ("submission__task_id", "id")
    rows = (
        PairwiseFeedback.objects.filter(
            current_from("submission__", options.sources), submission__task__project=project
        )
        .order_by(*ordering)
        .values_list(
            "id",
            "choice",
            "strength",
            "submission_id",
            "submission__task_id",
            "submission__annotator__username",
            "submission__judge__name",
            "submission__task__prompt_id",
        )
    )
    sources: dict[tuple[str | None, str | None], str] = {}
    for batch in _batched(rows.iterator(chunk_size=CHUNK), LOOKUP_BATCH):
        prompts = _prompts({row[7] for row in batch})
        pairs = _task_pairs({row[4] for row in batch})
        records = []
        for rid, choice, strength, sid, tid, annotator, judge, pid in batch:
            source = sources.get((annotator, judge))
            if source is None:
                source = sources[(annotator, judge)] = _source(annotator, judge)
            a, b = pairs[tid]
            records.append(
                PairwiseRecord(
                    rid, WINNERS[choice], float(strength or 0), sid, tid, source, prompts[pid], a, b
                )
            )
        yield records


def _pairwise_votes(project: Project, options: ExportOptions) -> Iterator[Vote]:
    for batch in _pairwise_batches(project, options):
        for r in batch:
            yield Vote(
                r.task_id,
                r.prompt,
                r.a,
                r.b,
                r.winner,
                r.strength,
                (r.task_id,),
                (r.submission_id,),
                (r.record_id,),
                (r.source,),
                (0, 1),
            )


def _prompts(ids: set[int]) -> dict[int, PromptRef]:
    rows = Prompt.objects.filter(pk__any=ids).values_list(*PROMPT_FIELDS)
    return {row[0]: PromptRef(*row) for row in rows}


def _task_pairs(task_ids: set[int]) -> dict[int, tuple[Candidate, Candidate]]:
    """The two candidates of each pair task, first shown first."""
    by_task: dict[int, list[int]] = defaultdict(list)
    links = TaskResponse.objects.filter(task_id__any=task_ids, position__lte=1)
    for task_id, _, response_id in _links(links):
        by_task[task_id].append(response_id)
    responses = _candidates({response_id for pair in by_task.values() for response_id in pair})
    return {task_id: (responses[a], responses[b]) for task_id, (a, b) in by_task.items()}


def _links(links: QuerySet[TaskResponse]) -> QuerySet:
    """(task id, position, response id) of the links, by task and position."""
    return links.order_by("task_id", "position").values_list("task_id", "position", "response_id")


def _candidates(response_ids: set[int]) -> dict[int, Candidate]:
    """The responses by id, read apart from their tasks' links: as one join over a batch
    of tasks, PostgreSQL hashed the whole response table for each batch (15 full scans
    of 80,000 rows for one 141,000-row export)."""
    rows = Response.objects.filter(pk__any=response_ids).order_by()
    return {row[0]: Candidate(*row) for row in rows.values_list("id", "text", "model_name")}


def _ranking_votes(project: Project, options: ExportOptions) -> Iterator[Vote]:
    """Every ranking says, for each two of its candidates, that the higher one is better."""
    for ranking in _rankings(project, options, by_task=options.aggregate == Aggregate.MAJORITY):
        for (i, better), (j, worse) in itertools.combinations(enumerate(ranking.order), 2):
            yield Vote(
                ranking.task_id,
                ranking.prompt,
                better,
                worse,
                0,
                float(j - i),
                (ranking.task_id,),
                (ranking.submission_id,),
                (ranking.record_id,),
                (ranking.source,),
            )


def _rating_votes(project: Project, options: ExportOptions) -> Iterator[Vote]:
    """Pairs from ratings: the higher mean (normalised) score wins, equal scores tie.

    Without aggregation a vote needs one source that rated both candidates of a prompt,
    on the single-response tasks where ratings are asked, or together. With majority,
    every rating of a against every rating of b votes, so the agreement is the share of
    such comparisons that go the majority's way. Either way the group is the prompt.
    """
    for prompt_votes in _rating_groups(project, options):
        yield from prompt_votes


# --- Pairs and unpaired ----------------------------------------------------------------


def _pair_rows(project: Project, options: ExportOptions, chat: bool) -> Iterator[dict]:
    if options.pairs_from == PairSource.PAIRWISE and options.aggregate == Aggregate.NONE:
        return _pairwise_pair_rows(project, options, chat)
    return _preference_pair_rows(project, options, chat)


def _preference_pair_rows(project: Project, options: ExportOptions, chat: bool) -> Iterator[dict]:
    completion = _Completions(chat)
    for preference in _kept(_preferences(_votes(project, options), options), options):
        chosen = completion(preference.prompt, preference.chosen)
        rejected = completion(preference.prompt, preference.rejected)
        if chosen is None or rejected is None:
            continue
        row: dict[str, Any] = {"prompt": chosen[0], "chosen": chosen[1], "rejected": rejected[1]}
        if options.margin:
            row["margin"] = float(preference.margin)
        if options.ties == Ties.KEEP_AS_COLUMN:
            row["tie"] = preference.tie
        row["chosen_response_id"] = preference.chosen.id
        row["rejected_response_id"] = preference.rejected.id
        row["chosen_model"] = preference.chosen.model
        row["rejected_model"] = preference.rejected.model
        row["chosen_position"] = preference.chosen_position
        row |= _trace(preference)
        row["prompt_chars"] = _prompt_chars(preference.prompt)
        row["chosen_chars"] = len(preference.chosen.text)
        row["rejected_chars"] = len(preference.rejected.text)
        yield row


def _pairwise_pair_rows(project: Project, options: ExportOptions, chat: bool) -> Iterator[dict]:
    """The rows `_preference_pair_rows` gives for pairwise choices without aggregation,
    one per record, written out directly: the most common export, and the votes and
    preferences in between cost more than the rows themselves. A tie is shown with the
    first candidate as chosen, a margin of 0; the agreement of one vote is 1."""
    keep_ties = options.ties == Ties.KEEP_AS_COLUMN
    for batch in _pairwise_batches(project, options):
        # Per task, built at its first row: both answers in the file's form, prompt length.
        tasks: dict[int, tuple[Any, Any, int]] = {}
        for r in batch:
            tie = r.winner is None
            if tie and not keep_ties:
                continue
            task = tasks.get(r.task_id)
            if task is None:
                task = tasks[r.task_id] = (
                    _completion(r.prompt, r.a.text, chat),
                    _completion(r.prompt, r.b.text, chat),
                    _prompt_chars(r.prompt),
                )
            completion_a, completion_b, prompt_chars = task
            if completion_a is None or completion_b is None:
                continue
            if r.winner == 1:
                chosen, rejected, chosen_pair, rejected_pair = r.b, r.a, completion_b, completion_a
            else:
                chosen, rejected, chosen_pair, rejected_pair = r.a, r.b, completion_a, completion_b
            row: dict[str, Any] = {
                "prompt": chosen_pair[0],
                "chosen": chosen_pair[1],
                "rejected": rejected_pair[1],
            }
            if options.margin:
                row["margin"] = 0.0 if tie else r.strength
            if keep_ties:
                row["tie"] = tie
            row.update(
                {
                    "chosen_response_id": chosen.id,
                    "rejected_response_id": rejected.id,
                    "chosen_model": chosen.model,
                    "rejected_model": rejected.model,
                    "chosen_position": 1 if r.winner == 1 else 0,
                    "prompt_id": r.prompt.id,
                    "prompt_external_id": r.prompt.external_id,
                    "task_ids": [r.task_id],
                    "submission_ids": [r.submission_id],
                    "record_ids": [r.record_id],
                    "sources": [r.source],
                    "votes": 1,
                    "agreement": 1.0,
                    "prompt_chars": prompt_chars,
                    "chosen_chars": len(chosen.text),
                    "rejected_chars": len(rejected.text),
                }
            )
            yield row


def _unpaired_rows(project: Project, options: ExportOptions, chat: bool) -> Iterator[dict]:
    """KTO's unpaired form: each decided pair gives a desirable and an undesirable row,
    shuffled (see `_shuffled`)."""
    return _shuffled(_unpaired_pairs(project, options, chat), options.seed)


def _unpaired_pairs(project: Project, options: ExportOptions, chat: bool) -> Iterator[dict]:
    completion = _Completions(chat)
    for preference in _kept(_preferences(_votes(project, options), options), options):
        for candidate, other, label in (
            (preference.chosen, preference.rejected, True),
            (preference.rejected, preference.chosen, False),
        ):
            pair = completion(preference.prompt, candidate)
            if pair is None:
                continue
            yield {
                "prompt": pair[0],
                "completion": pair[1],
                "label": label,
                "response_id": candidate.id,
                "paired_response_id": other.id,
                "model": candidate.model,
                **_trace(preference),
                "prompt_chars": _prompt_chars(preference.prompt),
                "completion_chars": len(candidate.text),
            }


SHUFFLE_BUFFER = 10_000  # rows held for the shuffle


def _shuffled(rows: Iterator[dict], seed: int) -> Iterator[dict]:
    """The rows in a random order fixed by `seed`, holding at most SHUFFLE_BUFFER of them.

    KTOTrainer reads the file in order and pairs each completion with another row's
    prompt, shifted within the batch, for its KL term: a pair's two rows side by side
    would give it matched prompts. A buffer shuffle (as `datasets`' streaming shuffle)
    keeps memory flat; a file shorter than the buffer is shuffled uniformly.
    """
    rng = random.Random(seed)
    buffer: list[dict] = []
    for row in rows:
        if len(buffer) < SHUFFLE_BUFFER:
            buffer.append(row)
            continue
        index = rng.randrange(SHUFFLE_BUFFER)
        yield buffer[index]
        buffer[index] = row
    rng.shuffle(buffer)
    yield from buffer


# --- Rankings --------------------------------------------------------------------------


@dataclass(slots=True)
class Ranking:
    prompt: PromptRef
    order: list[Candidate]  # best first
    task_id: int
    submission_id: int
    record_id: int
    source: str
    annotator: str
    judge: str
    created_at: datetime
    duration_ms: int | None


def _rankings(project: Project, options: ExportOptions, *, by_task: bool) -> Iterator[Ranking]:
    ordering = ("ranking__submission__task_id",) if by_task else ()
    rows = (
        RankingEntry.objects.filter(
            current_from("ranking__submission__", options.sources),
            ranking__submission__task__project=project,
        )
        .order_by(*ordering, "ranking_id", "rank")
        .values_list(
            "ranking_id",
            "ranking__submission_id",
            "ranking__submission__task_id",
            "ranking__submission__annotator__username",
            "ranking__submission__judge__name",
            "ranking__submission__created_at",
            "ranking__submission__duration_ms",
            *_prompt_fields("ranking__submission__task__prompt__"),
            "response_id",
            "response__text",
            "response__model_name",
        )
    )
    for _, group in itertools.groupby(rows.iterator(chunk_size=CHUNK), key=lambda r: r[0]):
        entries = list(group)
        rid, sid, tid, annotator, judge, created_at, duration_ms, *prompt = entries[0][:11]
        yield Ranking(
            PromptRef(*prompt),
            [Candidate(*entry[11:14]) for entry in entries],
            tid,
            sid,
            rid,
            _source(annotator, judge),
            annotator or "",
            judge or "",
            created_at,
            duration_ms,
        )


def _ranking_rows(project: Project, options: ExportOptions, chat: bool) -> Iterator[dict]:
    for ranking in _rankings(project, options, by_task=False):
        if any(not candidate.text.strip() for candidate in ranking.order):
            continue
        yield {
            "prompt": _prompt_value(ranking.prompt, chat),
            "completions": [candidate.text for candidate in ranking.order],
            "response_ids": [candidate.id for candidate in ranking.order],
            "models": [candidate.model for candidate in ranking.order],
            "prompt_id": ranking.prompt.id,
            "prompt_external_id": ranking.prompt.external_id,
            "task_id": ranking.task_id,
            "submission_id": ranking.submission_id,
            "record_id": ranking.record_id,
            "annotator": ranking.annotator,
            "judge": ranking.judge,
            "prompt_chars": _prompt_chars(ranking.prompt),
            "completion_chars": [len(candidate.text) for candidate in ranking.order],
        }


# --- Ratings ---------------------------------------------------------------------------


def _ratings(project: Project, options: ExportOptions, *, by_prompt: bool):
    filters = Q(submission__task__project=project) & current_from("submission__", options.sources)
    if options.aspect:
        filters &= Q(aspect__name=options.aspect)
    ordering = ("submission__task__prompt_id",) if by_prompt else ()
    return (
        RatingFeedback.objects.filter(filters)
        .order_by(*ordering, "submission_id", "response_id", "aspect__position", "aspect_id")
        .values_list(
            "id",
            "submission_id",
            "submission__task_id",
            "submission__annotator__username",
            "submission__judge__name",
            *_prompt_fields("submission__task__prompt__"),
            "response_id",
            "response__text",
            "response__model_name",
            "aspect__name",
            "aspect__scale_min",
            "aspect__scale_max",
            "value",
            "rationale",
        )
        .iterator(chunk_size=CHUNK)
    )


def _rating_rows(project: Project, options: ExportOptions, chat: bool) -> Iterator[dict]:
    """UltraFeedback's layout: a prompt, its completions, each with per-aspect ratings."""
    for _, group in itertools.groupby(_ratings(project, options, by_prompt=False), lambda r: r[1]):
        records = list(group)
        _, sid, tid, annotator, judge, *prompt = records[0][:9]
        prompt_ref = PromptRef(*prompt)
        completions = []
        for (response_id, text, model), ratings in itertools.groupby(
            records, key=lambda r: (r[9], r[10], r[11])
        ):
            completions.append(
                {
                    "response_id": response_id,
                    "model": model,
                    "text": text,
                    "chars": len(text),
                    "ratings": [
                        {
                            "record_id": r[0],
                            "aspect": r[12],
                            "value": r[15],
                            "scale_min": r[13],
                            "scale_max": r[14],
                            "rationale": r[16],
                        }
                        for r in ratings
                    ],
                }
            )
        yield {
            "prompt": _prompt_value(prompt_ref, chat),
            "completions": completions,
            "prompt_id": prompt_ref.id,
            "prompt_external_id": prompt_ref.external_id,
            "task_id": tid,
            "submission_id": sid,
            "annotator": annotator or "",
            "judge": judge or "",
            "prompt_chars": _prompt_chars(prompt_ref),
        }


@dataclass(slots=True)
class Scored:
    """One submission's mean normalised score (0-1) of one candidate."""

    candidate: Candidate
    score: float
    task_id: int
    submission_id: int
    record_ids: tuple[int, ...]
    source: str


def _rating_groups(project: Project, options: ExportOptions) -> Iterator[list[Vote]]:
    pooled = options.aggregate == Aggregate.MAJORITY
    rows = _ratings(project, options, by_prompt=True)
    for _, prompt_rows in itertools.groupby(rows, key=lambda r: r[5]):
        scored: list[Scored] = []
        prompt_ref: PromptRef | None = None
        for (sid, response_id), group in itertools.groupby(prompt_rows, lambda r: (r[1], r[9])):
            records = list(group)
            first = records[0]
            prompt_ref = PromptRef(*first[5:9])
            values = [(r[15] - r[13]) / (r[14] - r[13]) for r in records]
            scored.append(
                Scored(
                    Candidate(response_id, first[10], first[11]),
                    sum(values) / len(values),
                    first[2],
                    sid,
                    tuple(r[0] for r in records),
                    _source(first[3], first[4]),
                )
            )
        assert prompt_ref is not None
        yield list(_score_votes(prompt_ref, scored, pooled))


def _score_votes(prompt: PromptRef, scored: list[Scored], pooled: bool) -> Iterator[Vote]:
    for x, y in itertools.combinations(scored, 2):
        if x.candidate.id == y.candidate.id:
            continue
        if not pooled and x.source != y.source:
            continue
        diff = x.score - y.score
        winner = None if diff == 0 else 0 if diff > 0 else 1
        yield Vote(
            # The two ratings may come from two tasks: votes are grouped by prompt.
            prompt.id,
            prompt,
            x.candidate,
            y.candidate,
            winner,
            abs(diff),
            (x.task_id, y.task_id),
            (x.submission_id, y.submission_id),
            x.record_ids + y.record_ids,
            (x.source, y.source),
        )


# --- Spans -----------------------------------------------------------------------------


def _span_rows(project: Project, options: ExportOptions, chat: bool) -> Iterator[dict]:
    """One row per response a source checked for spans, with what it marked: an empty
    list is a response found clean, the negative example a span model needs."""
    checked = (
        TaskResponse.objects.filter(
            current_from("task__submissions__", options.sources),
            task__submissions__spans_checked=True,
            task__project=project,
        )
        .order_by("task__submissions__id", "response_id")
        .values_list(
            "task__submissions__id",
            "response_id",
            "task_id",
            "task__submissions__annotator__username",
            "task__submissions__judge__name",
            *_prompt_fields("task__prompt__"),
            "response__text",
            "response__model_name",
        )
    )
    for batch in _batched(checked.iterator(chunk_size=CHUNK), CHUNK):
        marked: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
        for sid, response_id, rid, start, end, label, severity, comment in (
            SpanFeedback.objects.filter(submission_id__any={row[0] for row in batch})
            .order_by("start", "end", "id")
            .values_list(
                "submission_id",
                "response_id",
                "id",
                "start",
                "end",
                "label__name",
                "severity",
                "comment",
            )
        ):
            marked[(sid, response_id)].append(
                {
                    "record_id": rid,
                    "start": start,
                    "end": end,
                    "label": label,
                    "severity": severity,
                    "comment": comment,
                }
            )
        for sid, response_id, tid, annotator, judge, *rest in batch:
            prompt, text, model = PromptRef(*rest[:4]), rest[4], rest[5]
            spans = marked.get((sid, response_id), [])
            for span in spans:
                span["quote"] = text[span["start"] : span["end"]]
            yield {
                "prompt": _prompt_value(prompt, chat),
                "response": text,
                "spans": spans,
                "response_id": response_id,
                "model": model,
                "prompt_id": prompt.id,
                "prompt_external_id": prompt.external_id,
                "task_id": tid,
                "submission_id": sid,
                "annotator": annotator or "",
                "judge": judge or "",
                "prompt_chars": _prompt_chars(prompt),
                "response_chars": len(text),
            }


# --- Raw -------------------------------------------------------------------------------

SUBMISSION_FIELDS = (
    "submission_id",
    "submission__task_id",
    "submission__annotator__username",
    "submission__judge__name",
    "submission__created_at",
    "submission__duration_ms",
    *_prompt_fields("submission__task__prompt__"),
)


RATING_FIELDS = (
    "response_id",
    "aspect__name",
    "aspect__scale_min",
    "aspect__scale_max",
    "value",
    "rationale",
)
SPAN_FIELDS = ("response_id", "label__name", "severity", "start", "end", "comment")


def _raw_rows(project: Project, options: ExportOptions, chat: bool) -> Iterator[dict]:
    """Every current feedback record, kind by kind, with its task's responses and timings.

    The kind's own fields travel as a JSON object in `data`, so that one file holds every
    kind with one column layout. `duration_ms` is -1 where none was measured.
    """
    base = Q(submission__task__project=project) & current_from("submission__", options.sources)
    kinds = [
        ("pairwise", PairwiseFeedback, ("choice", "strength")),
        ("rating", RatingFeedback, RATING_FIELDS),
        ("span", SpanFeedback, SPAN_FIELDS),
        ("free_text", FreeTextFeedback, ("mode", "text", "response_id")),
    ]
    for kind, model, fields in kinds:
        rows = (
            model.objects.filter(base)
            .order_by("id")
            .values_list("id", *SUBMISSION_FIELDS, *fields)
            .iterator(chunk_size=CHUNK)
        )
        for batch in _batched(rows, CHUNK):
            responses = _task_responses({row[2] for row in batch})
            for row in batch:
                data = dict(zip(fields, row[11:], strict=True))
                yield _raw_row(kind, row, _raw_data(kind, data, responses[row[2]]), responses, chat)
    for batch in _batched(_rankings(project, options, by_task=False), CHUNK):
        responses = _task_responses({ranking.task_id for ranking in batch})
        for r in batch:
            row = (
                r.record_id,
                r.submission_id,
                r.task_id,
                r.annotator or None,
                r.judge or None,
                r.created_at,
                r.duration_ms,
                *r.prompt,
            )
            data = {"order": [candidate.id for candidate in r.order]}
            yield _raw_row("ranking", row, data, responses, chat)


def _raw_data(kind: str, data: dict[str, Any], responses: list[dict]) -> dict[str, Any]:
    if kind == "rating":
        return {
            "response_id": data["response_id"],
            "aspect": data["aspect__name"],
            "value": data["value"],
            "scale_min": data["aspect__scale_min"],
            "scale_max": data["aspect__scale_max"],
            "rationale": data["rationale"],
        }
    if kind == "span":
        text = next(r["text"] for r in responses if r["response_id"] == data["response_id"])
        return {
            "response_id": data["response_id"],
            "label": data["label__name"],
            "severity": data["severity"],
            "start": data["start"],
            "end": data["end"],
            "comment": data["comment"],
            "quote": text[data["start"] : data["end"]],
        }
    return data


def _task_responses(task_ids: set[int]) -> dict[int, list[dict[str, Any]]]:
    """Each task's responses, in display order."""
    links = list(_links(TaskResponse.objects.filter(task_id__any=task_ids)))
    candidates = _candidates({response_id for _, _, response_id in links})
    responses: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for task_id, position, response_id in links:
        candidate = candidates[response_id]
        responses[task_id].append(
            {
                "response_id": response_id,
                "position": position,
                "model": candidate.model,
                "text": candidate.text,
            }
        )
    return responses


def _raw_row(
    kind: str, row: tuple, data: dict[str, Any], responses: dict[int, list[dict]], chat: bool
) -> dict[str, Any]:
    rid, sid, tid, annotator, judge, created_at, duration_ms, *prompt = row[:11]
    prompt_ref = PromptRef(*prompt)
    return {
        "kind": kind,
        "record_id": rid,
        "submission_id": sid,
        "task_id": tid,
        "prompt_id": prompt_ref.id,
        "prompt_external_id": prompt_ref.external_id,
        "prompt": _prompt_value(prompt_ref, chat),
        "responses": responses[tid],
        "annotator": annotator or "",
        "judge": judge or "",
        "created_at": created_at.isoformat(),
        "duration_ms": -1 if duration_ms is None else duration_ms,
        "data": json.dumps(data, ensure_ascii=False),
    }
