"""The agreement page's rater choice reloads the page when changed, under the CSP (the
handler is a module, not an inline attribute)."""

import pytest

from feedback.models import ProjectMember
from tests.factories import MemberFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_choosing_other_raters_reloads_the_page_with_them(live_server, page):
    project = ProjectFactory(name="İstanbul 🚀 <script>alert(1)</script>")
    MemberFactory(
        project=project, user=UserFactory(username="viewer"), role=ProjectMember.Role.VIEWER
    )
    refused: list[str] = []
    page.on("console", lambda m: "Content Security Policy" in m.text and refused.append(m.text))
    page.set_default_timeout(5000)
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.pk}/agreement/")
    page.fill("input[name=username]", "viewer")
    page.fill("input[name=password]", "pw")
    page.click("button[type=submit]")
    page.wait_for_url("**/agreement/")
    page.select_option("select[name=sources]", "judges")
    page.wait_for_url("**/agreement/?sources=judges")
    assert page.locator("select[name=sources]").input_value() == "judges"
    assert not refused
