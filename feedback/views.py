"""Pages for project admins (the annotator pages live in `annotate`)."""

from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django_htmx.middleware import HtmxDetails

from feedback import plots
from feedback.api.serializers import LeaderboardParamsSerializer
from feedback.models import Project, ProjectMember
from feedback.selectors import (
    REPORT_ROLES,
    member_role,
    project_agreement,
    project_consistency,
    project_leaderboard,
    prompt_categories,
)


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def login_required_htmx(view):
    """login_required, but an htmx request without a session gets 401: redirected, htmx
    would follow and swap the login page in place of the part it asked for."""
    page_view = login_required(view)

    @wraps(view)
    def wrapper(request: HtmxHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.htmx and not request.user.is_authenticated:
            return HttpResponse("Your session has ended: log in again.", status=401)
        return page_view(request, *args, **kwargs)

    return wrapper


def report_project(request: HttpRequest, project_id: int) -> Project:
    """The project if the user reads its reports; as the API: 404 outside it, 403 inside.

    Being staff grants nothing here: roles come from project membership (or superuser).
    """
    project = get_object_or_404(Project, pk=project_id)
    role = member_role(request.user, project)
    if role is None:
        raise Http404("No such project.")
    if role not in REPORT_ROLES:
        raise PermissionDenied("Only the project's admins and viewers read its reports.")
    return project


def admin_project(request: HttpRequest, project_id: int) -> Project:
    """The project if the user administers it (or is a superuser); 404 outside it, 403
    for its other members."""
    project = get_object_or_404(Project, pk=project_id)
    role = member_role(request.user, project)
    if role is None:
        raise Http404("No such project.")
    if role != ProjectMember.Role.ADMIN:
        raise PermissionDenied("Only the project's admins do this.")
    return project


@login_required
def project_agreement_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """Agreement and cross-protocol consistency, for the project's admins and viewers."""
    project = report_project(request, project_id)
    sources = request.GET.get("sources", "annotators")
    if sources not in {"annotators", "judges", "all"}:
        sources = "annotators"
    context = {
        "project": project,
        "role": member_role(request.user, project),
        "sources": sources,
        "agreement": project_agreement(project=project, sources=sources),
        "consistency": project_consistency(project=project),
    }
    return render(request, "feedback/agreement.html", context)


HEATMAP_MODELS = 20  # the page's win-rate heat map: the top models (the API has all pairs)


@login_required
def project_leaderboard_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """Model ratings from the project's pairwise judgments, for its admins and viewers.

    Takes the API's query parameters, so its JSON and CSV links carry the same slice.
    """
    project = report_project(request, project_id)
    params = LeaderboardParamsSerializer(data=request.GET)
    options = params.validated_data if params.is_valid() else {}
    options = {name: value for name, value in options.items() if name != "format"}
    board = project_leaderboard(project=project, **options)
    top = board.models[:HEATMAP_MODELS]
    names = [standing.model for standing in top]
    charts = {}
    if board.models:
        charts["ratings"] = plots.interval_chart(
            [standing.model for standing in board.models],
            [standing.rating for standing in board.models],
            [_or(standing.rating_low, standing.rating) for standing in board.models],
            [_or(standing.rating_high, standing.rating) for standing in board.models],
            title="Bradley-Terry rating with its 95% bootstrap interval",
            x_label="rating (Elo scale)",
        )
        charts["win_rates"] = plots.heatmap_chart(
            names, names, board.win_rates(HEATMAP_MODELS), title="Row model's win rate"
        )
    query = request.GET.copy()
    query.pop("format", None)
    context = {
        "project": project,
        "board": board,
        "errors": params.errors,
        "form": {name: request.GET.get(name, "") for name in params.fields},
        "categories": [f"{key}:{value}" for key, value in prompt_categories(project)],
        "charts": charts,
        "top_pairs": [p for p in board.pairs if p.model_a in names and p.model_b in names],
        "heatmap_models": len(top),
        "query": query.urlencode(),
    }
    return render(request, "feedback/leaderboard.html", context)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
