"""One Content-Security-Policy on every response, and templates it does not break: no
inline scripts, event handler attributes or style attributes."""

import re
from pathlib import Path

import pytest
from django.urls import reverse

from feedback.models import ProjectMember
from tests.factories import MemberFactory, UserFactory

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
    "object-src": "'none'",
}


def policy(response) -> dict[str, str]:
    header = response.headers.get("Content-Security-Policy", "")
    parts = (part.strip().split(" ", 1) for part in header.split(";") if part.strip())
    return {name: value for name, value in parts}


@pytest.fixture
def admin_of(project):
    user = UserFactory(username="padmin")
    MemberFactory(project=project, user=user, role=ProjectMember.Role.ADMIN)
    return user


@pytest.mark.parametrize(
    "path",
    [
        lambda p: reverse("login"),
        lambda p: reverse("annotate:project-list"),
        lambda p: reverse("annotate:task-next", args=[p.pk]),
        lambda p: reverse("annotate:project-jobs", args=[p.pk]),
        lambda p: reverse("feedback:project-agreement", args=[p.pk]),
        lambda p: reverse("feedback:project-dashboard", args=[p.pk]),
        lambda p: reverse("feedback:project-configure", args=[p.pk]),
        lambda p: reverse("api:project-detail", args=[p.pk]),
        lambda p: reverse("admin:index"),
        lambda p: "/no-such-page/",
    ],
    ids=[
        "login",
        "projects",
        "workspace",
        "jobs",
        "agreement",
        "dashboard",
        "configure",
        "api",
        "admin",
        "404",
    ],
)
def test_every_response_carries_the_policy(client, project, admin_of, path):
    admin_of.is_staff = True
    admin_of.save()
    client.force_login(admin_of)
    assert policy(client.get(path(project))) == DIRECTIVES


def test_the_api_docs_alone_allow_their_inline_style(client, admin_of):
    client.force_login(admin_of)
    response = client.get(reverse("api:docs"))
    assert response.status_code == 200
    assert policy(response) == {**DIRECTIVES, "style-src": "'self' 'unsafe-inline'"}
    assert re.search(r"<script>", response.content.decode()) is None


INLINE = {
    "event handler attribute": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "inline script": re.compile(r"<script(?![^>]*\b(src=|type=\"application/json\"))[^>]*>"),
    "style element": re.compile(r"<style", re.IGNORECASE),
}


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=str)
def test_templates_have_nothing_inline_the_policy_blocks(template):
    text = template.read_text()
    found = {what for what, pattern in INLINE.items() if pattern.search(text)}
    assert not found, f"{template.relative_to(TEMPLATES)}: {sorted(found)}"
