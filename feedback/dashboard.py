"""Reads behind the project dashboard and the project list, counted in the database.

Each read is one or two grouped queries whatever the project's size: per-task counts are
aggregated per layout in SQL, answers per hour are `date_trunc` buckets, and percentiles
are the smallest duration whose cumulative share (`CUME_DIST()`) reaches them, computed
per group in one query (nearest rank; PostgreSQL and SQLite alike).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Count, F, Max, OuterRef, Q, QuerySet, Subquery, Value, Window
from django.db.models.functions import Coalesce, CumeDist, TruncHour
from django.utils import timezone

from feedback.models import (
    Assignment,
    FreeTextFeedback,
    Project,
    ProjectMember,
    Submission,
    Task,
)
from feedback.selectors import projects_for_user

if TYPE_CHECKING:
    from feedback.judges import JudgeQuality

Status = Assignment.Status


def _percent(done: int, total: int) -> int:
    return min(100, round(100 * done / total)) if total else 0


def _start_of_today(now: datetime) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


# --- The queue ---------------------------------------------------------------------------


def layout_label(project: Project, layout: str) -> str:
    """A task layout with the kinds of feedback it asks for in this project."""
    if layout == Task.Layout.PAIR:
        asks = ["pairwise"]
        if FreeTextFeedback.Mode.RATIONALE in project.free_text_modes:
            asks.append("rationale")
    elif layout == Task.Layout.LIST:
        asks = ["ranking"]
    else:
        modes = set(project.free_text_modes) - {FreeTextFeedback.Mode.RATIONALE}
        asks = [
            name
            for name, on in (
                ("rating", project.collects_rating),
                ("spans", project.collects_spans),
                *((mode.label.lower(), True) for mode in sorted(modes)),
            )
            if on
        ]
    return f"{Task.Layout(layout).label}: {', '.join(asks)}"


@dataclass(frozen=True)
class LayoutProgress:
    """The tasks of one layout: done (all the annotators they need answered), in progress
    (answered or leased, not done), open (nobody yet), and answers given of those needed."""

    layout: str
    label: str
    tasks: int
    done: int
    in_progress: int
    open: int
    answers: int
    needed: int

    @property
    def percent(self) -> int:
        return _percent(self.answers, self.needed)


def queue_progress(*, project: Project, now: datetime | None = None) -> list[LayoutProgress]:
    """Per task layout, in layout order; an empty list for a project without tasks."""
    now = now or timezone.now()
    needed = project.annotators_per_task
    per_task = (
        Task.objects.filter(project=project)
        .order_by()
        .values("pk", "layout")
        .annotate(
            answered=Count("assignments", filter=Q(assignments__status=Status.SUBMITTED)),
            leased=Count(
                "assignments",
                filter=Q(assignments__status=Status.ACTIVE, assignments__leased_until__gt=now),
            ),
        )
    )
    sql, params = per_task.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH t AS ({sql}) SELECT layout, COUNT(*),"
            " SUM(CASE WHEN answered >= %s THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN answered < %s AND answered + leased > 0 THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN answered >= %s THEN %s ELSE answered END)"
            " FROM t GROUP BY layout",
            [*params, needed, needed, needed, needed],
        )
        rows = {layout: counts for layout, *counts in cursor.fetchall()}
    order = list(Task.Layout.values)
    return [
        LayoutProgress(
            layout=layout,
            label=layout_label(project, layout),
            tasks=tasks,
            done=done,
            in_progress=started,
            open=tasks - done - started,
            answers=answers,
            needed=tasks * needed,
        )
        for layout, (tasks, done, started, answers) in sorted(
            rows.items(), key=lambda item: order.index(item[0])
        )
    ]


# --- Time per task -----------------------------------------------------------------------


@dataclass(frozen=True)
class Durations:
    """Seconds an answer took: how many were timed, median and 90th percentile."""

    count: int
    median_s: float | None
    p90_s: float | None


def _durations_by(answers: QuerySet[Submission], group: str | None) -> dict[Any, Durations]:
    """Durations of `answers` per value of `group` (a field path; None: all under key 0),
    in one query."""
    partition = F(group) if group else None
    timed = (
        answers.filter(duration_ms__isnull=False)
        .order_by()
        .annotate(
            grp=partition if partition is not None else Value(0),
            share=Window(CumeDist(), partition_by=partition, order_by=F("duration_ms").asc()),
        )
        .values("grp", "duration_ms", "share")
    )
    sql, params = timed.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH d AS ({sql}) SELECT grp, COUNT(*),"
            " MIN(CASE WHEN share >= 0.5 THEN duration_ms END),"
            " MIN(CASE WHEN share >= 0.9 THEN duration_ms END) FROM d GROUP BY grp",
            params,
        )
        return {
            grp: Durations(count, median / 1000, p90 / 1000)
            for grp, count, median, p90 in cursor.fetchall()
        }


def _people_answers(project: Project) -> QuerySet[Submission]:
    """Every answer annotators gave in the project, changed ones too: each was work done."""
    return Submission.objects.filter(task__project=project, annotator__isnull=False)


# Bucket edges of the time-per-task histogram, in seconds.
DURATION_EDGES = (0, 10, 20, 40, 60, 120, 300)


@dataclass(frozen=True)
class TimePerTask:
    overall: Durations
    by_layout: dict[str, Durations]
    histogram: list[tuple[str, int]]  # (bucket label, answers)


def time_per_task(*, project: Project) -> TimePerTask:
    """How long annotators took per answer, overall and per layout, with a histogram."""
    answers = _people_answers(project)
    by_layout = _durations_by(answers, "task__layout")
    overall = _durations_by(answers, None)
    edges = [*DURATION_EDGES, None]
    buckets = {
        f"b{i}": Count(
            "pk",
            filter=Q(duration_ms__gte=low * 1000)
            & (Q() if high is None else Q(duration_ms__lt=high * 1000)),
        )
        for i, (low, high) in enumerate(itertools.pairwise(edges))
    }
    counts = answers.filter(duration_ms__isnull=False).aggregate(**buckets)
    labels = [
        f"{low}-{high} s" if high is not None else f"{low} s+"
        for low, high in itertools.pairwise(edges)
    ]
    order = list(Task.Layout.values)
    return TimePerTask(
        overall=overall.get(0, Durations(0, None, None)),
        by_layout=dict(sorted(by_layout.items(), key=lambda item: order.index(item[0]))),
        histogram=[(label, counts[f"b{i}"]) for i, label in enumerate(labels)],
    )


# --- Answers over time -------------------------------------------------------------------


@dataclass(frozen=True)
class HourCount:
    hour: datetime
    answers: int
    skips: int


def answers_per_hour(
    *, project: Project, hours: int = 48, now: datetime | None = None
) -> list[HourCount]:
    """Annotators' answers and skips in each of the last `hours` hours, oldest first,
    hours without any included (as zeros), the current hour last."""
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours - 1)
    answers = dict(
        _people_answers(project)
        .filter(created_at__gte=start)
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(n=Count("pk"))
        .values_list("hour", "n")
    )
    skips = dict(
        Assignment.objects.filter(project=project, status=Status.SKIPPED, finished_at__gte=start)
        .annotate(hour=TruncHour("finished_at"))
        .values("hour")
        .annotate(n=Count("pk"))
        .values_list("hour", "n")
    )
    slots = [start + timedelta(hours=i) for i in range(hours)]
    return [HourCount(hour, answers.get(hour, 0), skips.get(hour, 0)) for hour in slots]


# --- Annotators --------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotatorRow:
    username: str
    role: str  # "" for someone no longer a member
    submitted: int
    skipped: int
    holding: int  # live leases: a task open on their screen
    last_answer: datetime | None
    durations: Durations
    tasks: int  # the project's tasks, each of which they may answer once

    @property
    def percent(self) -> int:
        return _percent(self.submitted, self.tasks)

    @property
    def skip_rate(self) -> float | None:
        seen = self.submitted + self.skipped
        return self.skipped / seen if seen else None


def annotator_progress_table(
    *, project: Project, now: datetime | None = None
) -> list[AnnotatorRow]:
    """Each annotator's answers, skips and pace: members who may annotate, and anyone
    who holds or held a task here; most answers first."""
    now = now or timezone.now()
    counts = {
        row["annotator_id"]: row
        for row in Assignment.objects.filter(project=project)
        .order_by()
        .values("annotator_id", "annotator__username")
        .annotate(
            submitted=Count("pk", filter=Q(status=Status.SUBMITTED)),
            skipped=Count("pk", filter=Q(status=Status.SKIPPED)),
            holding=Count("pk", filter=Q(status=Status.ACTIVE, leased_until__gt=now)),
            last=Max("finished_at", filter=Q(status=Status.SUBMITTED)),
        )
    }
    members = dict(ProjectMember.objects.filter(project=project).values_list("user_id", "role"))
    annotating = {
        user_id: username
        for user_id, username in ProjectMember.objects.filter(
            project=project, role=ProjectMember.Role.ANNOTATOR
        ).values_list("user_id", "user__username")
    }
    annotating.update({uid: row["annotator__username"] for uid, row in counts.items()})
    durations = _durations_by(
        Submission.objects.filter(task__project=project, annotator_id__any=list(annotating)),
        "annotator_id",
    )
    tasks = Task.objects.filter(project=project).count()
    empty = {"submitted": 0, "skipped": 0, "holding": 0, "last": None}
    rows = [
        AnnotatorRow(
            username=username,
            role=members.get(user_id, ""),
            submitted=counts.get(user_id, empty)["submitted"],
            skipped=counts.get(user_id, empty)["skipped"],
            holding=counts.get(user_id, empty)["holding"],
            last_answer=counts.get(user_id, empty)["last"],
            durations=durations.get(user_id, Durations(0, None, None)),
            tasks=tasks,
        )
        for user_id, username in annotating.items()
    ]
    return sorted(rows, key=lambda row: (-row.submitted, row.username))


# --- Headline figures --------------------------------------------------------------------


@dataclass(frozen=True)
class Headline:
    tasks: int
    answers: int  # answers given towards the tasks' needs
    needed: int
    answers_today: int
    answers_24h: int
    annotators_24h: int  # distinct annotators who answered in the last 24 hours
    skipped: int
    submitted: int

    @property
    def percent(self) -> int:
        return _percent(self.answers, self.needed)

    @property
    def skip_rate(self) -> float | None:
        seen = self.submitted + self.skipped
        return self.skipped / seen if seen else None


def project_headline(
    *, project: Project, queue: Sequence[LayoutProgress], now: datetime | None = None
) -> Headline:
    now = now or timezone.now()
    answers = _people_answers(project).aggregate(
        today=Count("pk", filter=Q(created_at__gte=_start_of_today(now))),
        day=Count("pk", filter=Q(created_at__gte=now - timedelta(hours=24))),
        people=Count(
            "annotator", filter=Q(created_at__gte=now - timedelta(hours=24)), distinct=True
        ),
    )
    leases = Assignment.objects.filter(project=project).aggregate(
        skipped=Count("pk", filter=Q(status=Status.SKIPPED)),
        submitted=Count("pk", filter=Q(status=Status.SUBMITTED)),
    )
    return Headline(
        tasks=sum(row.tasks for row in queue),
        answers=sum(row.answers for row in queue),
        needed=sum(row.needed for row in queue),
        answers_today=answers["today"],
        answers_24h=answers["day"],
        annotators_24h=answers["people"],
        skipped=leases["skipped"],
        submitted=leases["submitted"],
    )


@dataclass(frozen=True)
class Dashboard:
    """What the project dashboard shows, apart from agreement and judge quality (their
    own selectors and API endpoints)."""

    headline: Headline
    queue: list[LayoutProgress]
    annotators: list[AnnotatorRow]
    answers_per_hour: list[HourCount]
    time_per_task: TimePerTask


def project_dashboard(*, project: Project, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    queue = queue_progress(project=project, now=now)
    return Dashboard(
        headline=project_headline(project=project, queue=queue, now=now),
        queue=queue,
        annotators=annotator_progress_table(project=project, now=now),
        answers_per_hour=answers_per_hour(project=project, now=now),
        time_per_task=time_per_task(project=project),
    )


# --- The project list --------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectOverview:
    project: Project
    role: str
    tasks: int
    answers: int  # submitted leases: answers towards the tasks' needs
    answers_today: int

    @property
    def needed(self) -> int:
        return self.tasks * self.project.annotators_per_task

    @property
    def percent(self) -> int:
        return _percent(self.answers, self.needed)

    @property
    def reads_reports(self) -> bool:
        return self.role in {ProjectMember.Role.ADMIN, ProjectMember.Role.VIEWER}

    @property
    def annotates(self) -> bool:
        return self.role in {ProjectMember.Role.ADMIN, ProjectMember.Role.ANNOTATOR}


def projects_overview(user: AbstractBaseUser, now: datetime | None = None) -> list[ProjectOverview]:
    """The user's projects with their progress and today's answers, three counts each
    taken by a subquery of the one query."""
    now = now or timezone.now()

    def counted(queryset: QuerySet, project: str) -> Coalesce:
        per_project = queryset.filter(**{project: OuterRef("pk")}).order_by().values(project)
        return Coalesce(Subquery(per_project.annotate(n=Count("pk")).values("n")), 0)

    projects = projects_for_user(user).annotate(
        task_count=counted(Task.objects.all(), "project"),
        answer_count=counted(Assignment.objects.filter(status=Status.SUBMITTED), "project"),
        today_count=counted(
            Submission.objects.filter(
                annotator__isnull=False, created_at__gte=_start_of_today(now)
            ),
            "task__project",
        ),
    )
    return [
        ProjectOverview(
            project=project,
            role=project.role,
            tasks=project.task_count,
            # Leases may outnumber a task's needs after annotators_per_task went down.
            answers=min(project.answer_count, project.task_count * project.annotators_per_task),
            answers_today=project.today_count,
        )
        for project in projects
    ]


# --- Agreement and judge quality as figures ---------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One number of a report, with what it counts over; `value` None: not enough data."""

    label: str
    value: float | None
    items: int | None = None


def agreement_figures(agreement: dict[str, Any]) -> list[Figure]:
    """The headline numbers of `selectors.project_agreement`, one per kind and aspect."""
    pairwise = agreement["pairwise"]
    figures = [
        Figure("Pairwise: Fleiss' κ", pairwise["fleiss_kappa"], pairwise["items"]),
        Figure("Pairwise: mean Cohen's κ", pairwise["mean_cohen_kappa"], pairwise["items"]),
    ]
    figures += [
        Figure(f"Rating alpha: {aspect['aspect']}", aspect["krippendorff_alpha"], aspect["items"])
        for aspect in agreement["ratings"]
    ]
    rankings, spans = agreement["rankings"], agreement["spans"]
    figures.append(
        Figure("Ranking: mean Kendall's τ", rankings["mean_kendall_tau"], rankings["items"])
    )
    figures.append(Figure("Spans: mean F1", spans["mean_f1"], spans["items"]))
    return figures


def judge_figures(report: JudgeQuality) -> list[Figure]:
    """One judge's agreement with people and its biases, as figures."""
    understood = (report.outputs - report.parse_errors) / report.outputs if report.outputs else None
    return [
        Figure("Pairwise κ with people", report.pairwise.kappa, report.pairwise.n),
        *(
            Figure(f"Rating κ: {aspect}", rated.kappa, rated.n)
            for aspect, rated in report.ratings.items()
        ),
        Figure("Position consistency", report.position_consistency, report.position_pairs),
        Figure(
            "First position wins",
            report.first_position_wins.share,
            report.first_position_wins.n,
        ),
        Figure("Outputs understood", understood, report.outputs),
    ]
