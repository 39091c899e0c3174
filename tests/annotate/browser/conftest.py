"""Browser fixtures: Debian's Chromium driven by Playwright against pytest-django's live server.

Playwright's sync API runs an event loop in the test thread, so Django's ORM calls made by
the test itself (setting up rows, checking them) need DJANGO_ALLOW_ASYNC_UNSAFE; it is set
here only, for these tests.
"""

import os
from pathlib import Path

import pytest

from feedback.models import Project, ProjectMember
from tests.factories import MemberFactory, UserFactory

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: PREFHUB_SCREENSHOT_DIR (CI keeps and prints it), else pytest's
    temporary directory of the run."""
    given = os.environ.get("PREFHUB_SCREENSHOT_DIR")
    folder = Path(given) if given else tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def screenshot(screenshot_dir: Path):
    """Save a full-page screenshot, as a test artifact for review."""

    def take(page, name: str) -> Path:
        path = screenshot_dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def open_workspace(live_server, page):
    """Log in as a fresh annotator of `project` and open its workspace; returns the user."""
    page.set_default_timeout(5000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Whatever the Content-Security-Policy refused (an inline style, a handler) is an error.
    page.on(
        "console",
        lambda message: "Content Security Policy" in message.text and errors.append(message.text),
    )

    def open_(project: Project, username: str = "ann"):
        user = UserFactory(username=username)
        MemberFactory(project=project, user=user, role=ProjectMember.Role.ANNOTATOR)
        page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.pk}/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", "pw")
        page.click("button[type=submit]")
        page.wait_for_selector("#task-card[data-ready]")
        return user

    yield open_
    assert not errors, f"JavaScript errors in the page: {errors}"
