"""Reads of the feedback domain used in more than one place."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from feedback.models import Project, ProjectMember


def projects_for_user(user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user belongs to in any role; superusers see all."""
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(members__user=user).distinct()


def member_role(user: AbstractBaseUser, project: Project) -> str | None:
    """The user's role in the project (superusers act as admins), or None."""
    if user.is_superuser:
        return ProjectMember.Role.ADMIN
    return (
        ProjectMember.objects.filter(project=project, user=user)
        .values_list("role", flat=True)
        .first()
    )
