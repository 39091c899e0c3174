"""Pages for project admins (the annotator pages live in `annotate`)."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from feedback.models import Project, ProjectMember
from feedback.selectors import member_role, project_agreement, project_consistency


@login_required
def project_agreement_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """Agreement and cross-protocol consistency, for the project's admins and staff."""
    project = get_object_or_404(Project, pk=project_id)
    is_admin = member_role(request.user, project) == ProjectMember.Role.ADMIN
    if not (is_admin or request.user.is_staff):
        raise Http404("No such project.")
    sources = request.GET.get("sources", "annotators")
    if sources not in {"annotators", "judges", "all"}:
        sources = "annotators"
    context = {
        "project": project,
        "sources": sources,
        "agreement": project_agreement(project=project, sources=sources),
        "consistency": project_consistency(project=project),
    }
    return render(request, "feedback/agreement.html", context)
