"""Who may do what, by role in the project named in the URL.

Readers of other projects get 404, not 403, so that the API does not tell outsiders which
projects exist.
"""

from rest_framework.exceptions import NotFound
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from feedback.models import Project, ProjectMember
from feedback.selectors import REPORT_ROLES, member_role

ADMIN = ProjectMember.Role.ADMIN
ANNOTATOR = ProjectMember.Role.ANNOTATOR
VIEWER = ProjectMember.Role.VIEWER


def project_and_role(request: Request, view: APIView) -> tuple[Project, str]:
    """The URL's project and the user's role in it, looked up once per request."""
    if not hasattr(view, "_project_role"):
        project = Project.objects.filter(pk=view.kwargs["project_id"]).first()
        role = member_role(request.user, project) if project is not None else None
        if role is None:
            raise NotFound("No such project.")
        view._project_role = (project, role)
    return view._project_role


class _ProjectRole(BasePermission):
    read_roles: frozenset[str] = frozenset()
    write_roles: frozenset[str] = frozenset({ADMIN})

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not request.user.is_authenticated:
            return False
        _, role = project_and_role(request, view)
        roles = self.read_roles if request.method in SAFE_METHODS else self.write_roles
        return role in roles


class IsProjectMember(_ProjectRole):
    """Every member reads; admins write."""

    read_roles = frozenset({ADMIN, ANNOTATOR, VIEWER})


class IsProjectReader(_ProjectRole):
    """Admins and viewers read (exports, agreement); annotators do not; admins write."""

    read_roles = REPORT_ROLES


class IsProjectAdmin(_ProjectRole):
    """Admins only, reads too: the loop's configuration decides what people are asked."""

    read_roles = frozenset({ADMIN})


class IsStaff(BasePermission):
    """Creating projects is for staff; everyone signed in lists their own."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in SAFE_METHODS:
            return bool(request.user.is_authenticated)
        return bool(request.user.is_authenticated and request.user.is_staff)
