"""The active-learning loop: each project's loop configuration, its selection rounds, the
trigger that starts a round once a batch is answered, and the pairs a judge settles.

A round is a `select` job (`worker.rounds` runs it): retrain on the labels so far, score
the candidates, pick a batch of pairs, turn them into tasks or move up the tasks they have,
and let the judge settle the pairs it is sure of. This module holds the rows and the rules;
the model work is the worker's.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, Count, FloatField, Max, Q, QuerySet, Value, When
from django.utils import timezone

from feedback.jobs import (
    RewardTrainParams,
    SelectParams,
    job_start,
    params_parse,
    select_params_check,
)
from feedback.models import (
    Job,
    Judge,
    LoopConfig,
    PairSelection,
    PairwiseFeedback,
    Project,
    Response,
    RewardModel,
    SelectionRound,
    Submission,
    Task,
    TaskResponse,
)
from feedback.services import FeedbackError, pair_tasks_ensure

Trigger = SelectionRound.Trigger
Route = PairSelection.Route
UNDER_WAY = (Job.Status.QUEUED, Job.Status.RUNNING)
# Every pairwise answer asks whether the project's loop is on; "off" is remembered this
# long (the common case, and a query an answer spared). A saved configuration drops it
# (feedback.apps), and turning the loop on starts a round by itself.
LOOP_OFF_CACHE_SECONDS = 30


def loop_off_key(project_id: int) -> str:
    return f"prefhub:project:{project_id}:loop-off"


# --- Configuration -----------------------------------------------------------------------


def default_reward_options() -> dict[str, Any]:
    """The loop's reward model unless an admin says otherwise: the shipped sentence encoder
    with a head, four heads so that disagreement and Thompson sampling have an ensemble."""
    return {
        "name": "Loop",
        "backbone": settings.REWARD_DEFAULT_BACKBONE,
        "backbone_kind": "embedding",
        "training": {"heads": 4},
    }


def loop_config(project: Project) -> LoopConfig:
    """The project's loop configuration, or the defaults (unsaved) when it has none."""
    config = LoopConfig.objects.filter(project=project).select_related("judge").first()
    return config or LoopConfig(project=project, reward_options=default_reward_options())


def select_params(config: LoopConfig) -> dict[str, Any]:
    """The `select` job's parameters for a round of this configuration.

    The dissimilar selector (and the fallback before there is a model) embeds with the
    loop's sentence encoder: the backbone of its reward model when that is one. Without
    one, both fall back to random pairs.
    """
    reward = config.reward_options or None
    embedding = reward["backbone"] if reward and reward["backbone_kind"] == "embedding" else ""
    judge = None
    if config.judge_id is not None:
        judge = {
            "judge_id": config.judge_id,
            "min_strength": config.judge_min_strength,
            "control_share": config.control_share,
        }
    return {
        "selector": config.selector,
        "batch_size": config.batch_size,
        "random_share": config.random_share,
        "max_pairs_per_prompt": config.max_pairs_per_prompt,
        "retrain": reward,
        "embedding_backbone": embedding,
        "judge": judge,
    }


LOOP_FIELDS = (
    "is_on",
    "pairs_by_selection",
    "selector",
    "batch_size",
    "random_share",
    "retrain_every",
    "max_pairs_per_prompt",
    "reward_options",
    "judge",
    "judge_min_strength",
    "control_share",
)


@transaction.atomic
def loop_config_save(
    *, project: Project, changes: dict[str, Any], user: AbstractBaseUser | None = None
) -> LoopConfig:
    """Change the project's loop configuration (its row is made on the first save).

    `changes` maps fields of LOOP_FIELDS to values (`judge` a Judge, its id or None). The
    configuration is checked whole, as the rounds will read it. Turning the loop on starts
    its first round unless one is under way. Raises FeedbackError naming each bad field.
    """
    unknown = set(changes) - set(LOOP_FIELDS)
    if unknown:
        raise FeedbackError(
            "The loop configuration was refused.",
            errors={name: ["Unknown field."] for name in sorted(unknown)},
        )
    # The project row orders this against round_start, which reads the configuration.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    if isinstance(changes.get("judge"), int):
        judge = Judge.objects.filter(pk=changes["judge"]).first()
        if judge is None:
            raise FeedbackError(
                "The loop configuration was refused.",
                errors={"judge": [f"No judge with id {changes['judge']}."]},
            )
        changes = {**changes, "judge": judge}
    if "reward_options" in changes and changes["reward_options"] is None:
        changes = {**changes, "reward_options": {}}
    config = loop_config(project)
    was_on = config.is_on
    for name, value in changes.items():
        setattr(config, name, value)
    config.updated_by = user
    errors: dict[str, list[str]] = {}
    try:
        config.full_clean(exclude=["project", "updated_by"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if config.reward_options:
        try:
            reward = params_parse(RewardTrainParams, config.reward_options, strict=True)
        except FeedbackError as exc:
            errors.update({f"reward_options.{k}": v for k, v in exc.errors.items()})
        else:
            config.reward_options = reward.model_dump(mode="json")  # every option, stated
    if not errors:
        # What a round will be started with, checked as job_start will check it.
        try:
            select_params_check(project, params_parse(SelectParams, select_params(config)))
        except FeedbackError as exc:
            for path, messages in exc.errors.items():
                field = "judge" if path.startswith("judge.") else path
                errors.setdefault(field.replace("retrain.", "reward_options.", 1), messages)
    if errors:
        raise FeedbackError("The loop configuration was refused.", errors=errors)
    config.save()
    if config.is_on and not was_on:
        round_start(project=project, trigger=Trigger.LOOP_ON, created_by=user)
    return config


# --- Rounds ------------------------------------------------------------------------------


def round_under_way(project_id: int) -> bool:
    """Whether a round of the project is queued or running (a failed one is not)."""
    return SelectionRound.objects.filter(
        project_id=project_id, finished_at__isnull=True, job__status__in=UNDER_WAY
    ).exists()


@transaction.atomic
def round_start(
    *,
    project: Project,
    trigger: str,
    created_by: AbstractBaseUser | None = None,
    start_key: Any = None,
) -> SelectionRound | None:
    """Number the project's next round and start its `select` job once committed, with the
    parameters of the project's loop configuration.

    One round at a time: while one is under way the loop's triggers get None (that round
    checks for the next batch when it ends) and an admin's start a FeedbackError.
    `start_key` names the form or request that asked: asking again returns its round.
    Picks of an earlier round still waiting for its judge (the round failed or was
    cancelled) go to people.
    """
    # The project row serialises starts: two submissions past the threshold at once make
    # one round, the second finding it under way.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    if start_key is not None and (
        started := SelectionRound.objects.filter(project=project, job__start_key=start_key).first()
    ):
        return started
    if round_under_way(project.pk):
        if trigger != Trigger.MANUAL:
            return None
        raise FeedbackError(
            "A round is already under way.",
            errors={"round": ["Wait for the queued or running round to finish."]},
        )
    PairSelection.objects.filter(round__project=project, route=Route.JUDGE_PENDING).update(
        route=Route.PEOPLE
    )
    last = SelectionRound.objects.filter(project=project).aggregate(Max("number"))
    newest = Submission.objects.aggregate(Max("id"))["id__max"] or 0
    params = select_params(loop_config(project))
    job = job_start(
        project=project,
        kind=Job.Kind.SELECT,
        params=params,
        created_by=created_by,
        start_key=start_key,
    )
    return SelectionRound.objects.create(
        project=project,
        number=(last["number__max"] or 0) + 1,
        job=job,
        trigger=trigger,
        submission_marker=newest,
        selector=job.params["selector"],
        judge_id=(job.params.get("judge") or {}).get("judge_id"),
    )


def labels_since(*, project_id: int, marker: int, limit: int) -> int:
    """People's current pairwise labels in the project with a submission id above
    `marker`, counted up to `limit`.

    The scan starts at the marker in the submissions' primary key and stops after `limit`
    matches, so its cost is the submissions since the last round, not the project's.
    """
    return Submission.objects.filter(
        pk__gt=marker,
        task__project_id=project_id,
        annotator__isnull=False,
        is_current=True,
        pairwise__isnull=False,
    )[:limit].count()


def labels_needed(config: LoopConfig, last: SelectionRound | None) -> int:
    """New labels that start the next round: `retrain_every`, or fewer when the last round
    sent people fewer tasks than that (the judge settled the rest): the batch is answered
    when those are. A failed round, or one that picked nothing, waits for `retrain_every`.
    """
    if last is None or not last.picked or last.job is None:
        return config.retrain_every
    if last.job.status != Job.Status.SUCCEEDED:
        return config.retrain_every
    sent = (last.to_people + last.control) * config.project.annotators_per_task
    return max(1, min(config.retrain_every, sent))


def loop_labels_committed(*, project_id: int) -> SelectionRound | None:
    """Called once people's pairwise answers are committed: start the project's next round
    when its loop is on, no round is under way and the batch is answered.

    Cheap on every answer: one look-up of the configuration, then of the last round, then
    a count bounded by the number needed. Concurrent callers make one round (round_start).
    """
    if cache.get(loop_off_key(project_id)):
        return None
    config = (
        LoopConfig.objects.filter(project_id=project_id, is_on=True)
        .select_related("project")
        .first()
    )
    if config is None:
        cache.set(loop_off_key(project_id), True, LOOP_OFF_CACHE_SECONDS)
        return None
    last = (
        SelectionRound.objects.filter(project_id=project_id)
        .select_related("job")
        .order_by("-number")
        .first()
    )
    if last is not None and last.finished_at is None and last.job and last.job.status in UNDER_WAY:
        return None
    needed = labels_needed(config, last)
    marker = last.submission_marker if last is not None else 0
    if labels_since(project_id=project_id, marker=marker, limit=needed) < needed:
        return None
    return round_start(project=config.project, trigger=Trigger.LABELS)


# --- A round's work ----------------------------------------------------------------------


def round_of_job(job: Job) -> SelectionRound:
    return SelectionRound.objects.select_related("project").get(job=job)


def round_update(selection_round: SelectionRound, **fields: Any) -> None:
    SelectionRound.objects.filter(pk=selection_round.pk).update(**fields)
    for name, value in fields.items():
        setattr(selection_round, name, value)


def pairwise_label_counts(project: Project) -> tuple[int, int]:
    """(people's, judges') current pairwise labels in the project."""
    counts = Submission.objects.filter(
        task__project=project, is_current=True, pairwise__isnull=False
    ).aggregate(
        people=Count("id", filter=Q(annotator__isnull=False)),
        judges=Count("id", filter=Q(judge__isnull=False)),
    )
    return counts["people"], counts["judges"]


def labels_unseen(project: Project, reward_model: RewardModel | None) -> bool:
    """Whether the project has pairwise labels newer than what the model learnt from (any
    label, without a model)."""
    newest = Submission.objects.filter(
        task__project=project, is_current=True, pairwise__isnull=False
    ).aggregate(Max("id"))["id__max"]
    seen = reward_model.data_snapshot.get("max_submission_id", 0) if reward_model else 0
    return newest is not None and newest > seen


def prompt_label_counts(project: Project) -> dict[int, int]:
    """Current pairwise labels per prompt id, for the prompt-level selector."""
    rows = (
        Submission.objects.filter(task__project=project, is_current=True, pairwise__isnull=False)
        .values_list("task__prompt_id")
        .annotate(n=Count("id"))
    )
    return dict(rows)


def candidate_responses(project: Project) -> list[tuple[int, int]]:
    """(prompt id, response id) of every response of the project."""
    return list(
        Response.objects.filter(prompt__project=project)
        .order_by("id")
        .values_list("prompt_id", "id")
    )


def closed_pairs(project: Project) -> set[tuple[int, int]]:
    """Pairs (smaller response id first) that a round leaves out: their pair task is held
    or answered by people, or held for a judge or settled by one. Pairs whose task is still
    open stay candidates: picking one moves its task up."""
    members: dict[int, list[int]] = defaultdict(list)
    closed_tasks: set[int] = set()
    for task_id, response_id, slots in TaskResponse.objects.filter(
        task__project=project, task__layout=Task.Layout.PAIR
    ).values_list("task_id", "response_id", "task__slots_taken"):
        members[task_id].append(response_id)
        if slots:
            closed_tasks.add(task_id)
    closed_tasks.update(
        PairSelection.objects.filter(
            task__project=project, route__in=PairSelection.HELD
        ).values_list("task_id", flat=True)
    )
    # Answers stored without a lease (imported, or through submission_create) count too.
    closed_tasks.update(
        Submission.objects.filter(
            task__project=project, task__layout=Task.Layout.PAIR, annotator__isnull=False
        ).values_list("task_id", flat=True)
    )
    return {(min(pair), max(pair)) for task, pair in members.items() if task in closed_tasks}


@dataclass(frozen=True)
class PickInput:
    """One picked pair, as a selector gave it."""

    responses: tuple[int, int]
    selector: str
    score: float
    reason: str


def pick_priority(number: int, rank: int, batch: int) -> float:
    """A pick's queue priority: above every earlier round's picks (a later model knows
    more) and below every later one's, in batch order within the round; tasks no round
    picked keep priority 0 and come after."""
    return number + (batch - rank) / (batch + 1)


@transaction.atomic
def round_picks_save(
    *, selection_round: SelectionRound, picks: Sequence[PickInput], hold: bool
) -> list[PairSelection]:
    """Make the picks tasks (pairs without one) or move their tasks up, so that people get
    them first and in batch order, and record each on the round.

    `hold`: the judge is asked first; people get the tasks once round_settle has routed
    them. Raises FeedbackError for pairs that are not the project's.
    """
    task_ids, created = pair_tasks_ensure(
        project=selection_round.project, pairs=[pick.responses for pick in picks]
    )
    batch = len(picks)
    priorities = [pick_priority(selection_round.number, rank, batch) for rank in range(batch)]
    if task_ids:
        Task.objects.filter(pk__any=task_ids).update(
            priority=Case(
                *(When(pk=t, then=Value(p)) for t, p in zip(task_ids, priorities, strict=True)),
                output_field=FloatField(),
            )
        )
    route = Route.JUDGE_PENDING if hold else Route.PEOPLE
    rows = PairSelection.objects.bulk_create(
        PairSelection(
            round=selection_round,
            task_id=task_id,
            rank=rank,
            selector=pick.selector,
            score=pick.score,
            reason=pick.reason,
            route=route,
        )
        for rank, (task_id, pick) in enumerate(zip(task_ids, picks, strict=True))
    )
    round_update(
        selection_round,
        picked=batch,
        created_tasks=created,
        reprioritised=batch - created,
        to_people=0 if hold else batch,
    )
    return rows


@transaction.atomic
def round_settle(
    *, selection_round: SelectionRound, min_strength: int, control_share: float
) -> None:
    """Route the round's held picks by its judge's current verdict on each task.

    A judge job asks a pair in both orders and stores one verdict: the response it chose
    both times with the weaker strength, or a tie when the orders disagree (position bias,
    `combine_swapped`). A pick is settled by the judge when that verdict chose a response
    with at least `min_strength` (none given counts as 1); `control_share` of the settled
    picks (at least one when above 0), drawn with the round's seed, go to people as well,
    to measure the judge against them. Every other pick goes to people.
    """
    held = list(
        selection_round.picks.select_for_update().filter(route=Route.JUDGE_PENDING).order_by("rank")
    )
    verdicts = {
        task_id: (choice, strength)
        for task_id, choice, strength in PairwiseFeedback.objects.filter(
            submission__judge_id=selection_round.judge_id,
            submission__is_current=True,
            submission__task_id__any=[pick.task_id for pick in held],
        ).values_list("submission__task_id", "choice", "strength")
    }
    sure = [
        pick.pk
        for pick in held
        if (verdict := verdicts.get(pick.task_id)) is not None
        and verdict[0] != PairwiseFeedback.Choice.TIE
        and (verdict[1] or 1) >= min_strength
    ]
    rng = random.Random(f"{selection_round.project_id}/{selection_round.number}")
    control = set(rng.sample(sure, math.ceil(control_share * len(sure))))
    settled = [pk for pk in sure if pk not in control]
    to_people = [pick.pk for pick in held if pick.pk not in set(sure)]
    for route, pks in ((Route.JUDGE, settled), (Route.CONTROL, control), (Route.PEOPLE, to_people)):
        PairSelection.objects.filter(pk__any=sorted(pks)).update(route=route)
    round_update(
        selection_round,
        judge_settled=len(settled),
        control=len(control),
        to_people=selection_round.to_people + len(to_people),
    )


def round_release(*, selection_round: SelectionRound, note: str) -> None:
    """Send the picks still waiting for the judge to people (the judge failed)."""
    released = selection_round.picks.filter(route=Route.JUDGE_PENDING).update(route=Route.PEOPLE)
    round_update(
        selection_round,
        to_people=selection_round.to_people + released,
        note="; ".join(filter(None, [selection_round.note, note])),
    )


@transaction.atomic
def round_finish(*, selection_round: SelectionRound, **fields: Any) -> None:
    """Store the round's last fields and its end; then see whether the labels that came
    in meanwhile already answer the next batch."""
    round_update(selection_round, finished_at=timezone.now(), **fields)
    project_id = selection_round.project_id
    transaction.on_commit(lambda: loop_labels_committed(project_id=project_id), robust=True)


# --- Reads -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlAgreement:
    """People against the judge on a round's control picks: `answers` of people on
    `answered` of the `tasks`, `agreeing` of them with the judge's verdict."""

    tasks: int
    answered: int
    answers: int
    agreeing: int

    @property
    def agreement(self) -> float | None:
        return self.agreeing / self.answers if self.answers else None


def control_agreement(rounds: Iterable[SelectionRound]) -> dict[int, ControlAgreement]:
    """Per round id: how people answered the pairs its judge settled, on the control
    sample. One query for the picks and one for the answers, whatever the rounds."""
    rounds = list(rounds)
    tasks: dict[int, list[int]] = defaultdict(list)
    for round_id, task_id in PairSelection.objects.filter(
        round__in=rounds, route=Route.CONTROL
    ).values_list("round_id", "task_id"):
        tasks[round_id].append(task_id)
    people: dict[int, list[str]] = defaultdict(list)
    judges: dict[tuple[int, int], str] = {}
    for task_id, judge_id, annotator_id, choice in PairwiseFeedback.objects.filter(
        submission__is_current=True,
        submission__task_id__any=sorted({t for ts in tasks.values() for t in ts}),
    ).values_list(
        "submission__task_id", "submission__judge_id", "submission__annotator_id", "choice"
    ):
        if annotator_id is not None:
            people[task_id].append(choice)
        else:
            judges[(task_id, judge_id)] = choice
    out = {}
    for r in rounds:
        answers = [
            (choice, judges.get((task_id, r.judge_id)))
            for task_id in tasks[r.pk]
            for choice in people[task_id]
        ]
        out[r.pk] = ControlAgreement(
            tasks=len(tasks[r.pk]),
            answered=sum(bool(people[task_id]) for task_id in tasks[r.pk]),
            answers=len(answers),
            agreeing=sum(choice == verdict for choice, verdict in answers),
        )
    return out


def project_rounds(project: Project) -> QuerySet[SelectionRound]:
    """The project's rounds, newest first, with their job, model and judge."""
    return SelectionRound.objects.filter(project=project).select_related(
        "job", "reward_model", "judge"
    )


# Rounds the pages' table shows, and picks shown per round.
ROUNDS_SHOWN = 20
PICKS_SHOWN = 10


def round_table(project: Project) -> dict[str, Any]:
    """What the rounds table shows: the latest rounds, each with its first picks and the
    judge's agreement with people on its control sample, and how often to poll (seconds;
    None: the table changes only when an admin starts a round)."""
    rounds = list(project_rounds(project)[:ROUNDS_SHOWN])
    first_picks: dict[int, list[PairSelection]] = {r.pk: [] for r in rounds}
    for pick in PairSelection.objects.filter(round__in=rounds, rank__lt=PICKS_SHOWN).order_by(
        "rank"
    ):
        first_picks[pick.round_id].append(pick)
    agreement = control_agreement(rounds)
    loop_on = LoopConfig.objects.filter(project=project, is_on=True).exists()
    return {
        "project": project,
        "rounds": [(r, first_picks[r.pk], agreement[r.pk]) for r in rounds],
        "poll_seconds": 2 if round_under_way(project.pk) else 10 if loop_on else None,
    }
