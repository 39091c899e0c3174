"""Reads of the feedback domain used in more than one place."""

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models import Q, QuerySet

from feedback.models import (
    Assignment,
    FeedbackKind,
    FreeTextFeedback,
    Project,
    ProjectMember,
    RatingAspect,
    Response,
    SpanLabel,
    Submission,
    Task,
)


def projects_for_user(user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user belongs to in any role; superusers see all."""
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(members__user=user).distinct()


def project_for_annotator(user: AbstractBaseUser, project_id: int) -> Project | None:
    """The project if the user may annotate it (annotator or admin, or superuser), else None.

    One query: this runs on every request of the annotator's workspace.
    """
    if user.is_superuser:
        return Project.objects.filter(pk=project_id).first()
    member = (
        ProjectMember.objects.select_related("project")
        .filter(
            project_id=project_id,
            user=user,
            role__in=[ProjectMember.Role.ANNOTATOR, ProjectMember.Role.ADMIN],
        )
        .first()
    )
    return member.project if member is not None else None


def member_role(user: AbstractBaseUser, project: Project) -> str | None:
    """The user's role in the project (superusers act as admins), or None."""
    if user.is_superuser:
        return ProjectMember.Role.ADMIN
    return (
        ProjectMember.objects.filter(project=project, user=user)
        .values_list("role", flat=True)
        .first()
    )


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


def annotator_progress(*, project: Project, annotator: AbstractBaseUser) -> Progress:
    """Tasks the annotator submitted in the project, out of all the project's tasks."""
    done = Assignment.objects.filter(
        project=project, annotator=annotator, status=Assignment.Status.SUBMITTED
    ).count()
    return Progress(done=done, total=project_task_count(project))


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


def previous_task_id(
    *, project: Project, annotator: AbstractBaseUser, before: Task | None = None
) -> int | None:
    """The task the annotator submitted just before `before` (or last of all), for "back"."""
    submitted = Assignment.objects.filter(
        project=project, annotator=annotator, status=Assignment.Status.SUBMITTED
    )
    if before is not None:
        anchor = submitted.filter(task=before).values_list("finished_at", "id").first()
        if anchor is not None:
            finished_at, anchor_id = anchor
            submitted = submitted.filter(
                Q(finished_at__lt=finished_at) | Q(finished_at=finished_at, id__lt=anchor_id)
            )
    return submitted.order_by("-finished_at", "-id").values_list("task_id", flat=True).first()


FEEDBACK_RECORDS = ("pairwise", "ratings", "ranking__entries", "spans", "texts")


@dataclass(frozen=True)
class TaskScreen:
    """Everything the annotator's page shows for one task."""

    task: Task
    responses: list[Response]
    aspects: list[RatingAspect]
    labels: list[SpanLabel]
    current: Submission | None  # the annotator's answer when they revisit the task
    earlier_answers: int  # superseded answers kept as history
    suggestions: list[Submission]  # judges' answers, when the project shows them

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
        responses=task.ordered_responses(),
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
