"""The API docs (Swagger UI) and the Django admin work under the site's CSP."""

import pytest

from tests.factories import ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def signed_in(live_server, page):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    refused: list[str] = []
    page.on("console", lambda m: "Content Security Policy" in m.text and refused.append(m.text))
    page.set_default_timeout(10000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", "pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return refused


def test_the_api_docs_render_the_schema(live_server, page, signed_in):
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info")
    assert "prefhub API" in page.locator(".swagger-ui .info").inner_text()
    assert page.locator(".opblock").count() > 10
    assert not signed_in


def test_the_admin_lists_projects(live_server, page, signed_in):
    ProjectFactory(name="İstanbul 🚀 <script>alert(1)</script>")
    page.goto(f"{live_server.url}/admin/feedback/project/")
    assert page.get_by_text("İstanbul 🚀 <script>alert(1)</script>").count() == 1
    assert not signed_in
