"""Pages where a project's admins see it whole and set it up: the dashboard, and the
create and configure forms (the Django admin is no longer needed for either)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from feedback import plots
from feedback.dashboard import Figure, agreement_figures, judge_figures, project_dashboard
from feedback.forms import (
    AspectFormSet,
    GuidelinesPreviewForm,
    MemberAddForm,
    MemberRoleForm,
    ProjectForm,
    SpanLabelFormSet,
    errors_to_forms,
    formset_items,
)
from feedback.judges import judge_quality, judges_of_project
from feedback.models import Job, Project, ProjectMember, RatingAspect, SpanLabel
from feedback.selectors import member_role, project_agreement, projects_administered
from feedback.services import (
    FeedbackError,
    member_add,
    member_remove,
    member_set_role,
    project_configure,
    project_create,
)
from feedback.views import admin_project, login_required_htmx, report_project


def _figures_chart(figures: list[Figure], *, title: str, y_label: str) -> str | None:
    """A bar per figure that has a value; None when none has."""
    shown = [figure for figure in figures if figure.value is not None]
    if not shown:
        return None
    return plots.bar_chart(
        [figure.label for figure in shown],
        [figure.value for figure in shown],
        title=title,
        y_label=y_label,
    )


def dashboard_context(project: Project) -> dict[str, Any]:
    """Everything the dashboard shows, its charts drawn; each chart's numbers are in the
    context too, for the tables beside them."""
    now = timezone.now()
    board = project_dashboard(project=project, now=now)
    queue, hours, timing = board.queue, board.answers_per_hour, board.time_per_task
    agreement = agreement_figures(project_agreement(project=project, sources="annotators"))
    judges = [
        (report, judge_figures(report))
        for report in (judge_quality(project=project, judge=j) for j in judges_of_project(project))
    ]
    charts: dict[str, str | None] = {
        "queue": plots.bar_chart(
            [row.label for row in queue],
            [row.percent for row in queue],
            title="Answers given of those needed, per kind of task",
            y_label="% of needed answers",
        )
        if queue
        else None,
        "hours": plots.line_chart(
            {
                "answers": [(i - len(hours) + 1, h.answers) for i, h in enumerate(hours)],
                "skips": [(i - len(hours) + 1, h.skips) for i, h in enumerate(hours)],
            },
            title=f"Answers and skips per hour, last {len(hours)} hours",
            x_label="hours ago (0: this hour)",
            y_label="per hour",
        )
        if any(h.answers or h.skips for h in hours)
        else None,
        "timing": plots.bar_chart(
            [label for label, _ in timing.histogram],
            [count for _, count in timing.histogram],
            title="Time per answer",
            y_label="answers",
        )
        if timing.overall.count
        else None,
        "annotators": plots.bar_chart(
            [row.username for row in board.annotators],
            [row.submitted for row in board.annotators],
            title="Tasks answered per annotator",
            y_label="tasks answered",
        )
        if any(row.submitted for row in board.annotators)
        else None,
        "agreement": _figures_chart(
            agreement, title="Agreement between annotators", y_label="κ, alpha, τ or F1"
        ),
    }
    return {
        "project": project,
        "now": now,
        "queue": queue,
        "headline": board.headline,
        "hours": [h for h in hours if h.answers or h.skips],
        "timing": timing,
        "annotators": board.annotators,
        "agreement": agreement,
        "judges": [
            (
                report,
                figures,
                _figures_chart(
                    figures, title=f"Judge {report.judge_name} against people", y_label="share or κ"
                ),
            )
            for report, figures in judges
        ],
        "jobs": Job.objects.filter(project=project).order_by("-created_at")[:5],
        "charts": charts,
    }


@login_required
def project_dashboard_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project at a glance, for its admins and viewers."""
    project = report_project(request, project_id)
    context = dashboard_context(project)
    context["role"] = member_role(request.user, project)
    return render(request, "feedback/dashboard.html", context)


# --- Create and configure ----------------------------------------------------------------


def _may_set_up_projects(user: AbstractBaseUser) -> bool:
    """Superusers create projects; a project's admins configure it."""
    return user.is_superuser or projects_administered(user).exists()


def _forms(
    project: Project | None, data: QueryDict | None
) -> tuple[ProjectForm, AspectFormSet, SpanLabelFormSet]:
    """The project form and its two formsets, bound to `data` or showing what is stored."""
    return (
        ProjectForm(data, instance=project if project is not None else Project()),
        AspectFormSet(
            data,
            prefix="aspects",
            queryset=project.aspects.all() if project else RatingAspect.objects.none(),
        ),
        SpanLabelFormSet(
            data,
            prefix="labels",
            queryset=project.span_labels.all() if project else SpanLabel.objects.none(),
        ),
    )


def _project_form_page(
    request: HttpRequest,
    project: Project | None,
    forms: tuple[ProjectForm, AspectFormSet, SpanLabelFormSet],
    *,
    members: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    form, aspects, labels = forms
    context: dict[str, Any] = {
        "role": ProjectMember.Role.ADMIN,
        "form": form,
        "aspects": aspects,
        "labels": labels,
        "guidelines": form["guidelines"].value() or "",
    }
    if project is not None:
        context |= members or _members_context(project)
    context["project"] = project
    return render(request, "feedback/project_form.html", context, status=status)


def _save(
    request: HttpRequest,
    project: Project | None,
    forms: tuple[ProjectForm, AspectFormSet, SpanLabelFormSet],
) -> Project | None:
    """Check the forms, then call the service; None, the errors on the forms, if refused."""
    form, aspects, labels = forms
    if not all([form.is_valid(), aspects.is_valid(), labels.is_valid()]):
        return None
    rows = {"aspects": formset_items(aspects), "labels": formset_items(labels)}
    given = {name: [item for _, item in pairs] for name, pairs in rows.items()}
    try:
        if project is None:
            return project_create(creator=request.user, **given, **form.project_fields())
        return project_configure(project=project, fields=form.project_fields(), **given)
    except FeedbackError as exc:
        errors_to_forms(exc, form, rows)
        return None


@login_required
@require_http_methods(["GET", "POST"])
def project_create_page(request: HttpRequest) -> HttpResponse:
    """A new project: its kinds, guidelines, aspects and labels; superusers only."""
    if not request.user.is_superuser:
        raise PermissionDenied("Only superusers create projects.")
    if request.method == "GET":
        return _project_form_page(request, None, _forms(None, None))
    forms = _forms(None, request.POST)
    project = _save(request, None, forms)
    if project is None:
        return _project_form_page(request, None, forms, status=422)
    messages.success(request, f"Created {project.name}. Add its members below.")
    return redirect(reverse("feedback:project-configure", args=[project.pk]) + "#members")


@login_required
@require_http_methods(["GET", "POST"])
def project_configure_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project's settings, aspects, labels, guidelines and members; its admins only."""
    project = admin_project(request, project_id)
    if request.method == "GET":
        return _project_form_page(request, project, _forms(project, None))
    forms = _forms(project, request.POST)
    if _save(request, project, forms) is None:
        # Checking the form set the refused values on the instance: the title shows the
        # stored name, the fields what was sent.
        project.refresh_from_db()
        return _project_form_page(request, project, forms, status=422)
    messages.success(request, "Saved.")
    return redirect("feedback:project-configure", project_id=project.pk)


@login_required_htmx
@require_POST
def guidelines_preview(request: HttpRequest) -> HttpResponse:
    """The guidelines as annotators will see them: Markdown, sanitised as on their page."""
    if not _may_set_up_projects(request.user):
        raise PermissionDenied("Only project admins preview guidelines.")
    form = GuidelinesPreviewForm(request.POST)
    text = form.cleaned_data["guidelines"] if form.is_valid() else ""
    return render(request, "feedback/project_form.html#guidelines-preview", {"guidelines": text})


# --- Members -----------------------------------------------------------------------------


def _members_context(
    project: Project, add_form: MemberAddForm | None = None, error: FeedbackError | None = None
) -> dict[str, Any]:
    return {
        "project": project,
        "members": ProjectMember.objects.filter(project=project)
        .select_related("user")
        .order_by("user__username"),
        "member_add_form": add_form or MemberAddForm(),
        "member_error": error,
        "roles": ProjectMember.Role.choices,
    }


def _members_answer(
    request: HttpRequest,
    project: Project,
    *,
    add_form: MemberAddForm | None = None,
    error: FeedbackError | None = None,
) -> HttpResponse:
    """The member list again (htmx) or the page; 422 with what was refused, if anything."""
    refused = error is not None or (add_form is not None and bool(add_form.errors))
    context = _members_context(project, add_form, error)
    status = 422 if refused else 200
    if request.htmx:
        return render(request, "feedback/project_form.html#members", context, status=status)
    if not refused:
        return redirect(reverse("feedback:project-configure", args=[project.pk]) + "#members")
    return _project_form_page(
        request, project, _forms(project, None), members=context, status=status
    )


@login_required_htmx
@require_POST
def member_add_view(request: HttpRequest, project_id: int) -> HttpResponse:
    project = admin_project(request, project_id)
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            member_add(project=project, **form.cleaned_data)
            form = MemberAddForm()
        except FeedbackError as exc:
            errors_to_forms(exc, form, {})
    return _members_answer(request, project, add_form=form)


def _member(request: HttpRequest, project_id: int, member_id: int) -> ProjectMember:
    project = admin_project(request, project_id)
    member = get_object_or_404(
        ProjectMember.objects.select_related("user"), pk=member_id, project=project
    )
    member.project = project
    return member


@login_required_htmx
@require_POST
def member_role_view(request: HttpRequest, project_id: int, member_id: int) -> HttpResponse:
    member = _member(request, project_id, member_id)
    form = MemberRoleForm(request.POST)
    try:
        if not form.is_valid():
            errors = {name: list(messages) for name, messages in form.errors.items()}
            raise FeedbackError("The role was refused.", errors=errors)
        member_set_role(member=member, role=form.cleaned_data["role"])
    except FeedbackError as exc:
        return _members_answer(request, member.project, error=exc)
    return _members_answer(request, member.project)


@login_required_htmx
@require_POST
def member_remove_view(request: HttpRequest, project_id: int, member_id: int) -> HttpResponse:
    member = _member(request, project_id, member_id)
    try:
        member_remove(member=member)
    except FeedbackError as exc:
        return _members_answer(request, member.project, error=exc)
    return _members_answer(request, member.project)
