"""Annotator pages."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from feedback.models import Project
from feedback.selectors import member_role, projects_for_user


@login_required
def project_list(request: HttpRequest) -> HttpResponse:
    projects = projects_for_user(request.user)
    return render(request, "annotate/project_list.html", {"projects": projects})


@login_required
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=project_id)
    role = member_role(request.user, project)
    if role is None:
        raise Http404("No such project.")
    return render(request, "annotate/project_detail.html", {"project": project, "role": role})
