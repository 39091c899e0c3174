"""Reads of the feedback domain used in more than one place."""

import itertools
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from statistics import fmean
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import (
    Case,
    F,
    FilteredRelation,
    FloatField,
    Prefetch,
    Q,
    QuerySet,
    TextField,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from feedback import agreement
from feedback.models import (
    Assignment,
    FeedbackKind,
    FreeTextFeedback,
    Judge,
    PairwiseFeedback,
    PairwiseTally,
    Project,
    ProjectMember,
    Prompt,
    RankingEntry,
    RatingAspect,
    RatingFeedback,
    Response,
    ResponseEdit,
    SpanFeedback,
    SpanLabel,
    Submission,
    Task,
    TaskResponse,
)
from feedback.rows import columns, from_row, prepared_cursor


def projects_for_user(user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user belongs to in any role, each with the user's `role`.

    Superusers see all, as admins.
    """
    if user.is_superuser:
        return Project.objects.annotate(role=Value(ProjectMember.Role.ADMIN.value))
    return Project.objects.filter(members__user=user).annotate(role=F("members__role"))


def projects_administered(user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user configures (all for superusers): what the Django admin shows them."""
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(members__user=user, members__role=ProjectMember.Role.ADMIN)


# The workspace asks on each request whether the user may annotate the project. Saving or
# deleting the project or the membership drops the answer (feedback.apps); where each
# process keeps its own cache, another process may go on using it this long. Submitting
# checks the membership again in the database (Submission.clean).
ANNOTATOR_PROJECT_CACHE_SECONDS = 30


def annotator_project_key(user_id: int, project_id: int) -> str:
    return f"prefhub:project:{project_id}:annotator:{user_id}"


def project_for_annotator(user: AbstractBaseUser, project_id: int) -> Project | None:
    """The project if the user may annotate it (annotator or admin, or superuser), else None.

    From the cache, else one query: this runs on every request of the annotator's workspace.
    """
    key = annotator_project_key(user.pk, project_id)
    project = cache.get(key)
    if project is not None:
        return project
    if user.is_superuser:
        project = Project.objects.filter(pk=project_id).first()
    else:
        member = (
            ProjectMember.objects.select_related("project")
            .filter(
                project_id=project_id,
                user=user,
                role__in=[ProjectMember.Role.ANNOTATOR, ProjectMember.Role.ADMIN],
            )
            .first()
        )
        project = member.project if member is not None else None
    if project is not None:
        cache.set(key, project, ANNOTATOR_PROJECT_CACHE_SECONDS)
    return project


# Roles that read a project's reports: exports, agreement, consistency, judge quality.
REPORT_ROLES = frozenset({ProjectMember.Role.ADMIN, ProjectMember.Role.VIEWER})


def member_role(user: AbstractBaseUser, project: Project) -> str | None:
    """The user's role in the project (superusers act as admins), or None."""
    if user.is_superuser:
        return ProjectMember.Role.ADMIN
    return (
        ProjectMember.objects.filter(project=project, user=user)
        .values_list("role", flat=True)
        .first()
    )


# --- Lists behind the API, scoped to one project -----------------------------------------


def project_prompts(project: Project) -> QuerySet[Prompt]:
    return Prompt.objects.filter(project=project).prefetch_related(
        Prefetch("responses", queryset=Response.objects.only("id", "prompt_id"))
    )


def project_responses(project: Project) -> QuerySet[Response]:
    return Response.objects.filter(prompt__project=project)


def project_tasks(project: Project) -> QuerySet[Task]:
    return Task.objects.filter(project=project).prefetch_related(
        Prefetch("links", queryset=TaskResponse.objects.order_by("position"))
    )


def project_feedback(project: Project, user: AbstractBaseUser, role: str) -> QuerySet[Submission]:
    """Submissions with their records; annotators see only their own."""
    submissions = (
        Submission.objects.filter(task__project=project)
        .select_related("annotator", "judge", "pairwise", "ranking")
        .prefetch_related(
            Prefetch("ratings", queryset=RatingFeedback.objects.select_related("aspect")),
            Prefetch("spans", queryset=SpanFeedback.objects.select_related("label")),
            "texts",
            "ranking__entries",
        )
    )
    if role == ProjectMember.Role.ANNOTATOR:
        submissions = submissions.filter(annotator=user)
    return submissions


# --- Agreement and consistency ---------------------------------------------------------


def _rater(annotator: str | None, judge: str | None) -> str:
    return f"judge:{judge}" if judge is not None else str(annotator)


def current_from(prefix: str, sources: str) -> Q:
    """Current submissions only, from `sources`: all, annotators or judges."""
    q = Q(**{f"{prefix}is_current": True})
    if sources == "annotators":
        q &= Q(**{f"{prefix}annotator__isnull": False})
    elif sources == "judges":
        q &= Q(**{f"{prefix}judge__isnull": False})
    return q


def project_agreement(*, project: Project, sources: str = "annotators") -> dict[str, Any]:
    """Agreement per kind of feedback, over the project and per rater.

    Raters are usernames, or `judge:<name>` for LLM judges (with sources=judges or all).
    """
    sub = current_from("submission__", sources)
    in_project = Q(submission__task__project=project)
    rater_fields = ("submission__annotator__username", "submission__judge__name")

    choices = _pairwise_choices(PairwiseFeedback.objects.filter(in_project, sub))
    kappas = _choice_kappas(choices)
    splits = _choice_splits(choices)
    items = itertools.chain.from_iterable(itertools.repeat(split, tasks) for split, tasks in splits)

    by_aspect: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for aspect, response_id, annotator, judge, value in (
        RatingFeedback.objects.filter(in_project, sub)
        .order_by("aspect__position", "aspect_id")
        .values_list("aspect__name", "response_id", *rater_fields, "value")
        .iterator(chunk_size=2000)
    ):
        by_aspect[aspect][response_id][_rater(annotator, judge)] = value

    orders: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for task_id, annotator, judge, response_id in (
        RankingEntry.objects.filter(
            current_from("ranking__submission__", sources),
            ranking__submission__task__project=project,
        )
        .order_by("ranking_id", "rank")
        .values_list(
            "ranking__submission__task_id",
            "ranking__submission__annotator__username",
            "ranking__submission__judge__name",
            "response_id",
        )
        .iterator(chunk_size=2000)
    ):
        orders[task_id][_rater(annotator, judge)].append(response_id)
    taus = agreement.by_rater_pairs(orders, agreement.kendall_tau)

    span_sets = _span_sets(project, sources)
    f1s = agreement.by_rater_pairs(span_sets, agreement.span_f1)

    return {
        "pairwise": {
            "items": sum(tasks for split, tasks in splits if sum(split.values()) >= 2),
            "fleiss_kappa": agreement.fleiss_kappa(items),
            "mean_cohen_kappa": agreement.mean_or_none(list(kappas.values())),
            "raters": agreement.per_rater(kappas),
        },
        "ratings": [
            {
                "aspect": aspect,
                "items": sum(len(raters) >= 2 for raters in units.values()),
                "krippendorff_alpha": agreement.krippendorff_alpha(units),
                "alpha_without_rater": agreement.alpha_without_each(units),
            }
            for aspect, units in by_aspect.items()
        ],
        "rankings": {
            "items": sum(len(raters) >= 2 for raters in orders.values()),
            "mean_kendall_tau": agreement.mean_or_none(list(taus.values())),
            "raters": agreement.per_rater(taus),
        },
        "spans": {
            "items": sum(len(raters) >= 2 for raters in span_sets.values()),
            "mean_f1": agreement.mean_or_none(list(f1s.values())),
            "raters": agreement.per_rater(f1s),
        },
    }


# Pairwise agreement is counted in the database: a million choices become a few dozen
# (rater, rater, choice, choice) counts and the few distinct (A, B, tie) splits of a task.
# Raters are ids there (a judge's negated), names only for the answer.


def _pairwise_choices(records: QuerySet) -> tuple[str, list]:
    """SQL and parameters of (task, rater, choice) rows."""
    rows = records.annotate(
        task=F("submission__task_id"),
        rater=Coalesce(F("submission__annotator_id"), -F("submission__judge_id")),
    ).values("task", "rater", "choice")
    sql, params = rows.query.sql_with_params()
    return sql, list(params)


def _rater_names(ids: set[int]) -> dict[int, str]:
    names = dict(get_user_model().objects.filter(pk__any=ids).values_list("pk", "username"))
    judges = Judge.objects.filter(pk__any={-rater for rater in ids if rater < 0})
    names.update({-pk: _rater(None, name) for pk, name in judges.values_list("pk", "name")})
    return names


def _choice_kappas(choices: tuple[str, list]) -> dict[tuple[str, str], float]:
    """Cohen's kappa of every two raters, from how often their choices met on a task."""
    sql, params = choices
    tables: dict[tuple[int, int], dict[tuple, int]] = defaultdict(dict)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH c AS ({sql}) SELECT a.rater, b.rater, a.choice, b.choice, COUNT(*)"
            " FROM c a JOIN c b ON a.task = b.task AND a.rater < b.rater GROUP BY 1, 2, 3, 4",
            params,
        )
        for rater_a, rater_b, choice_a, choice_b, count in cursor.fetchall():
            tables[(rater_a, rater_b)][(choice_a, choice_b)] = count
    names = _rater_names({rater for pair in tables for rater in pair})
    kappas = {}
    for (rater_a, rater_b), table in tables.items():
        if (kappa := agreement.cohen_kappa_table(table)) is not None:
            kappas[(names[rater_a], names[rater_b])] = kappa
    return kappas


def _choice_splits(choices: tuple[str, list]) -> list[tuple[dict[str, int], int]]:
    """Each distinct split of a task's choices ({"A": 2, "B": 1}) and how many tasks have it."""
    sql, params = choices
    labels = PairwiseFeedback.Choice.values
    per_label = ", ".join(
        f"SUM(CASE WHEN c.choice = %s THEN 1 ELSE 0 END) AS n{index}"
        for index in range(len(labels))
    )
    columns = ", ".join(f"n{index}" for index in range(len(labels)))
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH c AS ({sql}) SELECT {columns}, COUNT(*) FROM"
            f" (SELECT {per_label} FROM c GROUP BY c.task) AS per_task GROUP BY {columns}",
            [*params, *labels],
        )
        return [
            ({label: n for label, n in zip(labels, row[:-1], strict=True) if n}, row[-1])
            for row in cursor.fetchall()
        ]


def _span_sets(project: Project, sources: str) -> dict[tuple[int, int], dict[str, list]]:
    """(task, response) -> rater -> spans, for tasks where someone marked a span.

    Another rater's current submission on such a task that looked for spans and marked
    none on the response counts as an empty set; one that only rated, say, does not.
    """
    spans: dict[tuple[int, int], dict[str, list]] = defaultdict(dict)
    marked = SpanFeedback.objects.filter(
        current_from("submission__", sources), submission__task__project=project
    ).values_list(
        "submission__task_id",
        "response_id",
        "submission__annotator__username",
        "submission__judge__name",
        "start",
        "end",
        "label__name",
    )
    for task_id, response_id, annotator, judge, start, end, label in marked.iterator(
        chunk_size=2000
    ):
        spans[(task_id, response_id)].setdefault(_rater(annotator, judge), []).append(
            (start, end, label)
        )
    keys_by_task: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for key in spans:
        keys_by_task[key[0]].append(key)
    seen = Submission.objects.filter(
        current_from("", sources), task_id__any=keys_by_task, spans_checked=True
    ).values_list("task_id", "annotator__username", "judge__name")
    for task_id, annotator, judge in seen:
        for key in keys_by_task[task_id]:
            spans[key].setdefault(_rater(annotator, judge), [])
    return spans


def project_consistency(*, project: Project) -> dict[str, Any]:
    """How often ratings of two responses contradict a pairwise choice between them.

    `pooled` compares each choice with the mean normalised rating of each response over
    every rater; `same_rater` only where the one who chose also rated both. Split by
    annotators and judges, since published work reports both.
    """
    pooled: dict[int, list[float]] = defaultdict(list)
    own: dict[tuple[str, int], list[float]] = defaultdict(list)
    ratings = RatingFeedback.objects.filter(
        submission__task__project=project, submission__is_current=True
    ).values_list(
        "response_id",
        "submission__annotator__username",
        "submission__judge__name",
        "value",
        "aspect__scale_min",
        "aspect__scale_max",
    )
    for response_id, annotator, judge, value, low, high in ratings.iterator(chunk_size=2000):
        score = (value - low) / (high - low)
        pooled[response_id].append(score)
        own[(_rater(annotator, judge), response_id)].append(score)

    links = "submission__task__links"
    choices = (
        PairwiseFeedback.objects.filter(
            submission__task__project=project, submission__is_current=True
        )
        .exclude(choice=PairwiseFeedback.Choice.TIE)
        .annotate(
            first=FilteredRelation(links, condition=Q(submission__task__links__position=0)),
            second=FilteredRelation(links, condition=Q(submission__task__links__position=1)),
        )
        .values_list(
            "choice",
            "submission__annotator__username",
            "submission__judge__name",
            "first__response_id",
            "second__response_id",
        )
    )
    compared: dict[str, dict[str, list]] = {
        group: {"pooled": [], "same_rater": []} for group in ("annotators", "judges")
    }
    for choice, annotator, judge, a, b in choices.iterator(chunk_size=2000):
        group = compared["judges" if judge is not None else "annotators"]
        winner = 0 if choice == PairwiseFeedback.Choice.A else 1
        if pooled.get(a) and pooled.get(b):
            group["pooled"].append((winner, fmean(pooled[a]), fmean(pooled[b])))
        rater = _rater(annotator, judge)
        if own.get((rater, a)) and own.get((rater, b)):
            group["same_rater"].append((winner, fmean(own[(rater, a)]), fmean(own[(rater, b)])))
    return {
        group: {how: agreement.protocol_disagreement(rows) for how, rows in hows.items()}
        for group, hows in compared.items()
    }


# --- Leaderboard -------------------------------------------------------------------------
# Counted in the database, grouped by task (and by response pair for rankings): a million
# votes become a row per task, with the two responses' prompt, models and style columns.
# The fit, the bootstrap and style control run on those counts (feedback.leaderboard).

LEADERBOARD_LEVEL = 0.95  # of the intervals
LEADERBOARD_MIN_VOTES = 30  # a model with fewer comparisons is marked


@dataclass(frozen=True)
class ModelStanding:
    """One model's line of the leaderboard; ratings on the Elo scale (mean 1000)."""

    model: str
    rank: int  # 1 + the models rated higher
    rating: float
    rating_low: float | None  # bootstrap percentile interval at LEADERBOARD_LEVEL
    rating_high: float | None
    rank_low: int | None  # best and worst rank over the same share of resamples
    rank_high: int | None
    votes: int  # comparisons with another model
    wins: int
    losses: int
    ties: int
    win_rate: float  # (wins + ties / 2) / votes
    style_rating: float | None  # adjusted for length and Markdown
    style_rank: int | None
    online_elo: float | None  # vote by vote, in time order
    few_votes: bool


@dataclass(frozen=True)
class PairStanding:
    """Two models' head-to-head record, `model_a` before `model_b` by rating."""

    model_a: str
    model_b: str
    votes: int
    a_wins: int
    b_wins: int
    ties: int
    a_win_rate: float  # (a_wins + ties / 2) / votes


@dataclass(frozen=True)
class StyleEffect:
    """Log-odds of winning per standard deviation of the normalised difference in one
    style feature; None where the feature never differed."""

    feature: str
    coefficient: float | None
    standard_error: float | None


@dataclass(frozen=True)
class Leaderboard:
    sources: str
    category: tuple[str, str] | None
    include_rankings: bool
    min_votes: int
    resamples: int
    level: float
    votes: int  # pairwise votes (and ranking pairs) between two named models
    prompts: int
    first_decided: int  # pairwise votes that chose a side...
    first_wins: int  # ...and of them, those won by the response shown first (left)
    models: list[ModelStanding]
    pairs: list[PairStanding]
    style: list[StyleEffect]

    @property
    def first_win_rate(self) -> float | None:
        """Near 0.5 when the side a response is shown on does not sway the choice."""
        return self.first_wins / self.first_decided if self.first_decided else None

    def win_rates(self, limit: int | None = None) -> list[list[float | None]]:
        """Row model's win rate against column model, in rating order (None: never met)."""
        names = [standing.model for standing in self.models[:limit]]
        index = {name: n for n, name in enumerate(names)}
        matrix: list[list[float | None]] = [[None] * len(names) for _ in names]
        for pair in self.pairs:
            a, b = index.get(pair.model_a), index.get(pair.model_b)
            if a is not None and b is not None:
                matrix[a][b] = pair.a_win_rate
                matrix[b][a] = 1 - pair.a_win_rate
        return matrix


def _category_filter(prompt: str, category: tuple[str, str] | None) -> tuple[dict, Q]:
    """Annotations and a filter keeping the rows whose prompt (the path `prompt`) has
    metadata[key] == value (compared as text, so {"level": 3} matches "3"); the key is
    sent as a parameter."""
    if category is None:
        return {}, Q()
    key, value = category
    # Cast: compared as text on SQLite too, where a key transform compares as JSON.
    text = Cast(KeyTextTransform(key, f"{prompt}__metadata"), TextField())
    return {"category_value": text}, Q(category_value=value)


def _vote_sources(
    project: Project, sources: str, category: tuple[str, str] | None, include_rankings: bool
) -> tuple[QuerySet, QuerySet | None]:
    """The slice's current pairwise records and ranking entries, as querysets."""
    annotation, in_category = _category_filter("submission__task__prompt", category)
    pairwise = (
        PairwiseFeedback.objects.filter(
            current_from("submission__", sources), submission__task__project=project
        )
        .alias(**annotation)
        .filter(in_category)
    )
    if not include_rankings:
        return pairwise, None
    annotation, in_category = _category_filter("ranking__submission__task__prompt", category)
    entries = (
        RankingEntry.objects.filter(
            current_from("ranking__submission__", sources),
            ranking__submission__task__project=project,
        )
        .alias(**annotation)
        .filter(in_category)
    )
    return pairwise, entries


STYLE_COLUMNS = ("length", "markdown_headers", "markdown_list_items", "markdown_bold")


@dataclass(frozen=True)
class LeaderboardCounts:
    """Counted votes, one entry per task (pairwise) or response pair (rankings): the two
    responses, their prompt and models (indexes into `names`, -1 for a response written
    by a person), the outcomes, the task (-1 for a ranking's pair) and each response's
    STYLE_COLUMNS."""

    names: list[str]
    first_response: np.ndarray
    second_response: np.ndarray
    prompt: np.ndarray
    first: np.ndarray
    second: np.ndarray
    first_wins: np.ndarray
    second_wins: np.ndarray
    ties: np.ndarray
    task: np.ndarray
    first_style: np.ndarray  # (rows, 4)
    second_style: np.ndarray


@dataclass(frozen=True)
class _ResponseTable:
    """A project's responses, sorted by id: columns id, prompt, model (an index into
    `names`, -1 for a person), then STYLE_COLUMNS."""

    names: list[str]
    rows: np.ndarray
    ids: np.ndarray

    def find(self, ids: np.ndarray) -> np.ndarray | None:
        """The rows of these response ids; None if one is not in the table."""
        at = np.searchsorted(self.ids, ids)
        if len(ids) and (at.max() >= len(self.ids) or (self.ids[at] != ids).any()):
            return None
        return self.rows[at]


RESPONSE_TABLES_KEPT = 4  # projects whose response table stays in memory (7 int64 a response)
_response_tables: dict[tuple[str, int, datetime], tuple[int, _ResponseTable]] = {}


def _response_table(project: Project, *, reread: bool = False) -> _ResponseTable:
    """The project's response table, from memory while its ResponseEdit number is the
    one it was read under (PostgreSQL: elsewhere no trigger keeps that number).

    Reading 400,000 responses cost more than the rest of the counts together. The number
    is read before the responses: a change committed in between is then in the table,
    read under the older number, and the next build rereads it.
    """
    # The creation time too: a database made again under its name may reuse the id.
    key = (connection.settings_dict["NAME"], project.pk, project.created_at)
    version = None
    if connection.vendor == "postgresql":
        edit = ResponseEdit.objects.filter(project=project).values_list("version", flat=True)
        version = next(iter(edit), 0)
        kept = _response_tables.get(key)
        if not reread and kept is not None and kept[0] == version:
            return kept[1]
    styles = ", ".join(f"r.{column}" for column in STYLE_COLUMNS)
    by_model = _integer_rows(
        f"SELECT r.model_name, r.id, r.prompt_id, {styles} FROM {Response._meta.db_table} r"
        f" WHERE r.prompt_id IN (SELECT id FROM {Prompt._meta.db_table} WHERE project_id = %s)",
        [project.pk],
        2 + len(STYLE_COLUMNS),
    )
    names = sorted(name for name in by_model if name)  # "": written by a person
    code = {name: n for n, name in enumerate(names)}
    rows = np.concatenate(
        [np.insert(rows, 2, code.get(name, -1), axis=1) for name, rows in by_model.items()]
        or [np.empty((0, 3 + len(STYLE_COLUMNS)), dtype=np.int64)]
    )
    rows = rows[np.argsort(rows[:, 0])]
    table = _ResponseTable(names, rows, np.ascontiguousarray(rows[:, 0]))
    if version is not None:
        _response_tables.pop(key, None)
        _response_tables[key] = (version, table)
        while len(_response_tables) > RESPONSE_TABLES_KEPT:
            _response_tables.pop(next(iter(_response_tables)), None)  # a thread may be first
    return table


def _leaderboard_counts(
    project: Project, sources: str, category: tuple[str, str] | None, entries: QuerySet | None
) -> LeaderboardCounts:
    """The slice's votes counted per task (pairwise, from PairwiseTally) and per response
    pair (rankings), with their responses' prompts, models and style.

    All numbers: the responses' columns come from `_response_table` and are joined here
    by id (joining a few hundred thousand responses twice in SQL cost more than the
    counting); a model is its index in the sorted list of the project's models.
    """
    responses = _response_table(project)
    kinds = {"annotators": ["annotator"], "judges": ["judge"]}.get(sources, ["annotator", "judge"])
    outcomes = {
        outcome: sum((F(f"{kind}_{outcome}") for kind in kinds[1:]), F(f"{kinds[0]}_{outcome}"))
        for outcome in ("first_wins", "second_wins", "ties")
    }
    annotation, in_category = _category_filter("prompt", category)
    no_rows = np.empty((0, 6), dtype=np.int64)
    tallies = (
        PairwiseTally.objects.filter(project=project)
        .alias(**annotation)
        .filter(in_category)
        .annotate(**outcomes)
        .alias(votes=outcomes["first_wins"] + outcomes["second_wins"] + outcomes["ties"])
        .filter(votes__gt=0)
        .values_list("first_response_id", "second_response_id", *outcomes, "task_id")
    )
    sql, params = tallies.query.sql_with_params()
    rows = _integer_rows(f"SELECT '', q.* FROM ({sql}) q", params, 6).get("", no_rows)
    if entries is not None:
        entry_sql, entry_params = entries.values(
            list_id=F("ranking_id"), item=F("response_id"), place=F("rank")
        ).query.sql_with_params()
        ranked = _integer_rows(
            "SELECT '', b.item, w.item, COUNT(*), 0, 0, -1"
            f" FROM ({entry_sql}) b JOIN ({entry_sql}) w"
            " ON b.list_id = w.list_id AND b.place < w.place GROUP BY b.item, w.item",
            [*entry_params, *entry_params],
            6,
        )
        rows = np.concatenate([rows, ranked.get("", no_rows)])
    pair = rows[:, :2].ravel()
    found = responses.find(pair)
    if found is None:  # a response added since the table was read
        responses = _response_table(project, reread=True)
        found = responses.find(pair)
        if found is None:
            raise LookupError("A voted response was deleted while the leaderboard read it.")
    first, second = found[0::2], found[1::2]
    return LeaderboardCounts(
        names=responses.names,
        first_response=rows[:, 0],
        second_response=rows[:, 1],
        prompt=first[:, 1],
        first=first[:, 2],
        second=second[:, 2],
        first_wins=rows[:, 2].astype(np.float64),
        second_wins=rows[:, 3].astype(np.float64),
        ties=rows[:, 4].astype(np.float64),
        task=rows[:, 5],
        first_style=first[:, 3:].astype(np.float64),
        second_style=second[:, 3:].astype(np.float64),
    )


def _integer_rows(sql: str, params: Sequence[Any], columns: int) -> dict[str, np.ndarray]:
    """The rows of a query, grouped by its first column (text): for each value, the
    (rows, columns) int64 array of the other columns, integers, never NULL.

    PostgreSQL packs a group's rows into one bytea of big-endian int64s, which numpy
    reads as it is: as rows of Python ints (or by COPY, a message per row), 200,000 rows
    took longer than the query. The result comes in binary, on a psycopg cursor of its own
    (Django's cursors return text only): in text, the server wrote each bytea out in hex,
    twice its size, and the client decoded it back. Other databases: fetchall.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            groups = defaultdict(list)
            for key, *values in cursor.fetchall():
                groups[key].append(values)
        return {key: np.array(rows, dtype=np.int64) for key, rows in groups.items()}
    import psycopg  # the PostgreSQL backend's driver

    packed = " || ".join(f"int8send(CAST(q.c{n} AS bigint))" for n in range(columns))
    names = ", ".join(f"c{n}" for n in range(columns))
    connection.ensure_connection()
    query = f"SELECT q.key, string_agg({packed}, '') FROM ({sql}) q(key, {names}) GROUP BY q.key"
    # The values go into the text, as Django's cursors put them: a statement with parameters
    # would be planned for any value (the connection's plan_cache_mode serves the prepared
    # statements of the annotator's loop), and projects' sizes differ too much for that.
    query = psycopg.ClientCursor(connection.connection).mogrify(query, params)
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(query, binary=True, prepare=False)
        groups = cursor.fetchall()
    return {
        key: np.frombuffer(data, ">i8").reshape(-1, columns).astype(np.int64)
        for key, data in groups
    }


def _compared_models_only(counts: LeaderboardCounts, compared: np.ndarray) -> LeaderboardCounts:
    """Without the models that no row of `compared` has (only ever against themselves or a
    person), the others renumbered: they are not on the board, nor in its mean."""
    present = np.unique(np.concatenate([counts.first[compared], counts.second[compared]]))
    renumber = np.full(len(counts.names) + 1, -1)  # the last entry keeps -1 at -1
    renumber[present] = np.arange(len(present))
    return replace(
        counts,
        names=[counts.names[k] for k in present],
        first=renumber[counts.first],
        second=renumber[counts.second],
    )


CATEGORY_VALUES = 50  # a metadata key with more distinct values is an id, not a category
CATEGORY_SCAN = 5000  # distinct metadata objects read to find them


def prompt_categories(project: Project) -> list[tuple[str, str]]:
    """(key, value) pairs of the prompts' metadata that slice the leaderboard: scalar
    values of keys with at most CATEGORY_VALUES of them, values as text (as compared)."""
    seen: dict[str, set[str]] = defaultdict(set)
    metadata = (
        Prompt.objects.filter(project=project)
        .order_by()
        .values_list("metadata", flat=True)
        .distinct()[:CATEGORY_SCAN]
    )
    for entry in metadata:
        for key, value in (entry or {}).items() if isinstance(entry, dict) else ():
            if isinstance(value, bool):
                seen[key].add("true" if value else "false")
            elif isinstance(value, str | int | float):
                seen[key].add(str(value))
    return [
        (key, value)
        for key in sorted(seen)
        if len(seen[key]) <= CATEGORY_VALUES
        for value in sorted(seen[key])
    ]


ELO_CHUNK = 100_000  # votes per fetch of the online Elo's ordered stream


def _votes_in_time_order(
    pairwise: QuerySet, entries: QuerySet | None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Chunks of (task, first response, second response, score of the first), vote by
    vote in the order the submissions were stored. A pairwise vote names its task (its
    responses are the task's, known from the counts: no join per vote), a ranking's
    pairs their responses (task -1)."""
    scores = Case(
        When(choice=PairwiseFeedback.Choice.A, then=Value(1.0)),
        When(choice=PairwiseFeedback.Choice.B, then=Value(0.0)),
        default=Value(0.5),
        output_field=FloatField(),
    )
    votes = pairwise.values(
        sid=F("submission_id"),
        task=F("submission__task_id"),
        first_id=Value(-1),
        second_id=Value(-1),
        score=scores,
    )
    sql, params = votes.query.sql_with_params()
    params = list(params)
    if entries is not None:
        entry_sql, entry_params = entries.values(
            sid=F("ranking__submission_id"),
            list_id=F("ranking_id"),
            item=F("response_id"),
            place=F("rank"),
        ).query.sql_with_params()
        # No parentheses around the members of the UNION: SQLite refuses them.
        sql = (
            f"SELECT sid, task, first_id, second_id, score FROM ({sql}) p"
            " UNION ALL SELECT b.sid, -1, b.item, w.item, 1.0"
            f" FROM ({entry_sql}) b JOIN ({entry_sql}) w"
            " ON b.list_id = w.list_id AND b.place < w.place"
        )
        params += [*entry_params, *entry_params]
    with connection.cursor() as cursor:
        # In the order the submissions were stored (ids follow it; created_at is no index
        # and parsing a million timestamps took seconds), converted a chunk at a time.
        cursor.execute(
            f"SELECT task, first_id, second_id, score FROM ({sql}) v ORDER BY sid", params
        )
        while rows := cursor.fetchmany(ELO_CHUNK):
            chunk = np.fromiter(itertools.chain.from_iterable(rows), np.float64, 4 * len(rows))
            task, first, second, score = chunk.reshape(-1, 4).T
            yield task.astype(np.int64), first.astype(np.int64), second.astype(np.int64), score


@contextmanager
def _roomy_queries() -> Iterator[None]:
    """On PostgreSQL, for the few queries over every vote of a project: work_mem enough
    for their million-row hashes and sorts (at the default 4 MB they spilled to disk)
    and no JIT (it spent 0.15 s compiling scans that gain nothing from it). SET LOCAL:
    for this transaction only."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL work_mem = '64MB'")
                cursor.execute("SET LOCAL jit = off")
        yield


@_roomy_queries()
def project_leaderboard(
    *,
    project: Project,
    sources: str = "all",
    category: tuple[str, str] | None = None,
    include_rankings: bool = False,
    min_votes: int = LEADERBOARD_MIN_VOTES,
    resamples: int = 1000,
    online_elo: bool = False,
    seed: int = 0,
) -> Leaderboard:
    """Bradley-Terry ratings of the models (`Response.model_name`) from the project's
    current pairwise judgments, with bootstrap intervals over prompts, style control,
    head-to-head records, the left-position win rate and, if asked (`online_elo`: it
    replays every vote in Python, seconds for a million), online Elo for comparison.

    `sources`: all, annotators or judges. `category`: (metadata key, value) of the
    prompts to keep. `include_rankings`: each ranking also counts as the pairwise
    outcomes it implies. Responses without a model name (written by a person) are not
    rated; a model against itself (two of its samples) counts for position only.
    """
    pairwise, entries = _vote_sources(project, sources, category, include_rankings)
    counts = _leaderboard_counts(project, sources, category, entries)
    shown = counts.task >= 0
    board = {
        "sources": sources,
        "category": category,
        "include_rankings": include_rankings,
        "min_votes": min_votes,
        "resamples": resamples,
        "level": LEADERBOARD_LEVEL,
        "first_decided": int(counts.first_wins[shown].sum() + counts.second_wins[shown].sum()),
        "first_wins": int(counts.first_wins[shown].sum()),
    }
    rated = (counts.first >= 0) & (counts.second >= 0) & (counts.first != counts.second)
    if not rated.any():
        return Leaderboard(**board, votes=0, prompts=0, models=[], pairs=[], style=[])
    from feedback import leaderboard as lb  # scipy: loaded for a leaderboard only

    counts = _compared_models_only(counts, rated)
    names = counts.names
    prompts, prompt_index = np.unique(counts.prompt[rated], return_inverse=True)
    comparisons = lb.Comparisons(
        n_models=len(names),
        prompt=prompt_index,
        first=counts.first[rated],
        second=counts.second[rated],
        first_wins=counts.first_wins[rated],
        second_wins=counts.second_wins[rated],
        ties=counts.ties[rated],
    )
    table = lb.pair_table(comparisons)
    strengths = lb.bt_fit(table)
    ratings = lb.elo(strengths)
    low = high = rank_low = rank_high = None
    if resamples:
        samples = lb.elo(lb.bootstrap(table, strengths, resamples=resamples, seed=seed))
        low, high = lb.percentile_interval(samples, LEADERBOARD_LEVEL)
        rank_low, rank_high = lb.rank_interval(samples, LEADERBOARD_LEVEL)
    style = lb.style_fit(comparisons, counts.first_style[rated], counts.second_style[rated])
    style_ratings = lb.elo(style.strengths)
    online = None
    if online_elo:
        online = lb.online_elo(_model_votes(pairwise, entries, counts), len(names))
    m = len(names)
    wins = np.bincount(table.i, table.i_wins, m) + np.bincount(table.j, table.j_wins, m)
    losses = np.bincount(table.i, table.j_wins, m) + np.bincount(table.j, table.i_wins, m)
    ties = np.bincount(table.i, table.ties, m) + np.bincount(table.j, table.ties, m)
    votes = wins + losses + ties
    ranks, style_ranks = lb.ranks(ratings), lb.ranks(style_ratings)
    order = np.argsort(-ratings, kind="stable")
    models = [
        ModelStanding(
            model=names[n],
            rank=int(ranks[n]),
            rating=float(ratings[n]),
            rating_low=None if low is None else float(low[n]),
            rating_high=None if high is None else float(high[n]),
            rank_low=None if rank_low is None else int(rank_low[n]),
            rank_high=None if rank_high is None else int(rank_high[n]),
            votes=int(votes[n]),
            wins=int(wins[n]),
            losses=int(losses[n]),
            ties=int(ties[n]),
            win_rate=float((wins[n] + ties[n] / 2) / votes[n]) if votes[n] else 0.0,
            style_rating=float(style_ratings[n]),
            style_rank=int(style_ranks[n]),
            online_elo=None if online is None else float(online[n]),
            few_votes=bool(votes[n] < min_votes),
        )
        for n in order
    ]
    place = {n: position for position, n in enumerate(order.tolist())}
    pairs = []
    for i, j, i_wins, j_wins, tied in zip(
        table.i.tolist(),
        table.j.tolist(),
        table.i_wins.tolist(),
        table.j_wins.tolist(),
        table.ties.tolist(),
        strict=True,
    ):
        if place[i] > place[j]:
            i, j, i_wins, j_wins = j, i, j_wins, i_wins
        total = i_wins + j_wins + tied
        pairs.append(
            PairStanding(
                names[i],
                names[j],
                int(total),
                int(i_wins),
                int(j_wins),
                int(tied),
                (i_wins + tied / 2) / total,
            )
        )
    index = {name: n for n, name in enumerate(names)}
    pairs.sort(key=lambda pair: (place[index[pair.model_a]], place[index[pair.model_b]]))
    return Leaderboard(
        **board,
        votes=int(votes.sum() // 2),
        prompts=len(prompts),
        models=models,
        pairs=pairs,
        style=[
            StyleEffect(
                feature,
                None if np.isnan(coefficient) else float(coefficient),
                None if np.isnan(error) else float(error),
            )
            for feature, coefficient, error in zip(
                lb.STYLE_FEATURES, style.coefficients, style.standard_errors, strict=True
            )
        ],
    )


def _model_votes(
    pairwise: QuerySet, entries: QuerySet | None, counts: LeaderboardCounts
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The time-ordered votes as model indexes, leaving out those the fit leaves out."""
    # A last entry of -1: where _positions finds nothing (-1), no model is known.
    tasks = np.flatnonzero(counts.task >= 0)
    tasks = tasks[np.argsort(counts.task[tasks])]
    task_ids = counts.task[tasks]
    task_first = np.append(counts.first[tasks], -1)
    task_second = np.append(counts.second[tasks], -1)
    response_ids, where = np.unique(
        np.concatenate([counts.first_response, counts.second_response]), return_index=True
    )
    models_of = np.append(np.concatenate([counts.first, counts.second])[where], -1)
    for task, first_id, second_id, score in _votes_in_time_order(pairwise, entries):
        at = _positions(task_ids, task)
        a, b = _positions(response_ids, first_id), _positions(response_ids, second_id)
        is_pairwise = task >= 0
        first = np.where(is_pairwise, task_first[at], models_of[a])
        second = np.where(is_pairwise, task_second[at], models_of[b])
        keep = (first >= 0) & (second >= 0) & (first != second)
        yield first[keep], second[keep], score[keep]


def _positions(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Where each id is in `sorted_ids`, -1 where it is not there."""
    if not len(sorted_ids):
        return np.full(len(ids), -1)
    at = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
    return np.where(sorted_ids[at] == ids, at, -1)


# --- The annotator's queue and task screen -------------------------------------------


@dataclass(frozen=True)
class Progress:
    done: int
    total: int

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.done / self.total)) if self.total else 0


# Project-wide counts scan every task; a few seconds stale is fine for a progress bar.
PROJECT_PROGRESS_TTL_S = 15


def project_task_count(project: Project) -> int:
    key = f"prefhub:project:{project.pk}:task-count"
    count = cache.get(key)
    if count is None:
        count = Task.objects.filter(project=project).count()
        cache.set(key, count, PROJECT_PROGRESS_TTL_S)
    return count


def project_progress(*, project: Project) -> Progress:
    """Judgments made out of judgments needed (tasks x annotators per task)."""
    key = f"prefhub:project:{project.pk}:done"
    done = cache.get(key)
    if done is None:
        done = Assignment.objects.filter(
            project=project, status=Assignment.Status.SUBMITTED
        ).count()
        cache.set(key, done, PROJECT_PROGRESS_TTL_S)
    return Progress(done=done, total=project_task_count(project) * project.annotators_per_task)


def held_task(*, project: Project, annotator: AbstractBaseUser) -> Task | None:
    """The task the annotator holds a live lease on in the project, read only: the lease is
    neither renewed nor taken (queue.task_claim_next does that, on a POST)."""
    assignment = (
        Assignment.objects.select_related("task__prompt")
        .filter(
            project=project,
            annotator=annotator,
            status=Assignment.Status.ACTIVE,
            leased_until__gt=timezone.now(),
        )
        .first()
    )
    if assignment is None:
        return None
    assignment.task.project = project
    return assignment.task


def annotator_task(
    *, project: Project, annotator: AbstractBaseUser, task_id: int, lapsed: bool = False
) -> Task | None:
    """The task if it is the project's and the annotator holds or answered it (`lapsed`:
    or held a lease that ran out), else None; one statement, as each submit asks."""
    expired = "" if lapsed else " AND a.status <> 'expired'"
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT {columns(Task, 't')} FROM feedback_task t"
            " WHERE t.id = %s AND t.project_id = %s AND EXISTS (SELECT 1 FROM"
            f" feedback_assignment a WHERE a.task_id = t.id AND a.annotator_id = %s{expired})",
            [task_id, project.pk, annotator.pk],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    task = from_row(Task, row)
    task.project = project
    return task


@dataclass(frozen=True)
class AnnotatorPlace:
    progress: Progress  # tasks the annotator submitted in the project, out of all its tasks
    previous_task_id: int | None  # for "back"


# The annotator's submitted tasks: how many (kept by triggers, AnnotatorProgress), and the
# one before `before` (a task they submitted) or else the last one, read backwards along the
# (project, annotator, status, finished_at, id) index; then, a row each, the responses of
# the task shown. Row values compare in PostgreSQL and SQLite alike.
_PLACE_SQL = f"""
SELECT
    COALESCE((SELECT submitted FROM feedback_annotatorprogress
     WHERE project_id = %(project)s AND annotator_id = %(annotator)s), 0),
    (SELECT m.task_id FROM feedback_assignment m
     WHERE m.project_id = %(project)s AND m.annotator_id = %(annotator)s
        AND m.status = 'submitted'
        AND NOT EXISTS (
            SELECT 1 FROM feedback_assignment b
            WHERE b.task_id = %(before)s AND b.annotator_id = %(annotator)s
                AND b.status = 'submitted' AND (b.finished_at, b.id) <= (m.finished_at, m.id)
        )
     ORDER BY m.finished_at DESC, m.id DESC LIMIT 1),
    {columns(Response, "r")}
FROM (SELECT 1) AS place
LEFT JOIN feedback_taskresponse l ON l.task_id = %(shown)s
LEFT JOIN feedback_response r ON r.id = l.response_id
ORDER BY l.position
"""


def annotator_place(
    *,
    project: Project,
    annotator: AbstractBaseUser,
    before: Task | None = None,
    shown: Task | None = None,
) -> AnnotatorPlace:
    """The annotator's progress, and the task they submitted just before `before` (or last
    of all, as on each fresh card). `shown`: the card's task, whose responses come in the
    same statement and are kept on it, as every card reads both."""
    params = {
        "project": project.pk,
        "annotator": annotator.pk,
        "before": before.pk if before is not None else None,
        "shown": shown.pk if shown is not None else None,
    }
    with prepared_cursor() as cursor:
        cursor.execute(_PLACE_SQL, params)
        rows = cursor.fetchall()
    done, previous = rows[0][:2]
    if shown is not None:
        shown.keep_ordered_responses([from_row(Response, row[2:]) for row in rows if row[2]])
    return AnnotatorPlace(
        progress=Progress(done=done, total=project_task_count(project)),
        previous_task_id=previous,
    )


FEEDBACK_RECORDS = ("pairwise", "ratings", "ranking__entries", "spans", "texts")


@dataclass(frozen=True)
class TaskScreen:
    """Everything the annotator's page shows for one task."""

    task: Task
    aspects: list[RatingAspect]
    labels: list[SpanLabel]
    current: Submission | None  # the annotator's answer when they revisit the task
    earlier_answers: int  # superseded answers kept as history
    suggestions: list[Submission]  # judges' answers, when the project shows them

    @cached_property
    def responses(self) -> list[Response]:
        """Read when first used: a pairwise answer is checked without them."""
        return self.task.ordered_responses()

    @property
    def kinds(self) -> set[FeedbackKind]:
        return set(task_kinds(self.task))


def task_kinds(task: Task) -> list[FeedbackKind]:
    """The kinds of feedback a task of this layout asks for in its project."""
    project = task.project
    if task.layout == Task.Layout.PAIR:
        return [FeedbackKind.PAIRWISE] + (
            [FeedbackKind.FREE_TEXT]
            if FreeTextFeedback.Mode.RATIONALE in project.free_text_modes
            else []
        )
    if task.layout == Task.Layout.LIST:
        return [FeedbackKind.RANKING]
    modes = set(project.free_text_modes) - {FreeTextFeedback.Mode.RATIONALE}
    kinds = [
        kind
        for kind, on in (
            (FeedbackKind.RATING, project.collects_rating),
            (FeedbackKind.SPAN, project.collects_spans),
            (FeedbackKind.FREE_TEXT, bool(modes)),
        )
        if on
    ]
    return kinds


def task_screen(*, task: Task, annotator: AbstractBaseUser, answered: bool = True) -> TaskScreen:
    """The task as the annotator sees it; `answered=False` (a fresh lease) skips looking up
    an earlier answer of theirs, which such a task cannot have."""
    project = task.project
    kinds = task_kinds(task)
    current = (
        Submission.objects.filter(task=task, annotator=annotator, is_current=True)
        .prefetch_related(*FEEDBACK_RECORDS)
        .first()
        if answered
        else None
    )
    suggestions: list[Submission] = []
    if project.show_judge_suggestions:
        suggestions = list(
            Submission.objects.filter(task=task, judge__isnull=False, is_current=True)
            .select_related("judge")
            .prefetch_related(*FEEDBACK_RECORDS)
        )
    return TaskScreen(
        task=task,
        aspects=list(project.aspects.all()) if FeedbackKind.RATING in kinds else [],
        labels=list(project.span_labels.all()) if FeedbackKind.SPAN in kinds else [],
        current=current,
        earlier_answers=(
            Submission.objects.filter(task=task, annotator=annotator, is_current=False).count()
            if current is not None
            else 0
        ),
        suggestions=suggestions,
    )
