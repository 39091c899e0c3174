"""An admin's pages in a real Chromium: the dashboard, leaderboard and configuration of a
project seeded as the demo seeds it, and a project created through the pages, with hostile
HTML in its guidelines. Screenshots are kept as test artifacts."""

from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from feedback.jobs import JudgeOutputInput, judge_result_save
from feedback.management.commands.demo import Command as Demo
from feedback.management.commands.demo import simulate_annotators
from feedback.models import Job, Project, ProjectMember, Task
from feedback.services import FeedbackInput, PairwiseInput
from tests.factories import JudgeFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SVG_CHART = 'img.chart[src^="data:image/svg+xml;base64,"]'


@pytest.fixture
def watched(page):
    """The page, with whatever the Content-Security-Policy refused or scripts threw."""
    page.set_default_timeout(8000)
    # The first chart of a process loads matplotlib (and agreement, SciPy): seconds on a
    # busy machine.
    page.set_default_navigation_timeout(30000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: "Content Security Policy" in message.text and errors.append(message.text),
    )
    yield page
    assert not errors, f"errors in the page: {errors}"


def log_in(page, base: str, username: str, password: str, next_path: str) -> None:
    page.goto(f"{base}/accounts/login/?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    # The first dashboard of a process takes seconds (see `watched`): wait for it, not the click.
    page.click("button[type=submit]", no_wait_after=True)
    page.wait_for_url(lambda url: urlsplit(url).path == next_path)


@pytest.fixture
def demo_like(db) -> Project:
    """The demo's project, users and simulated annotators, and a judge's verdicts (both
    orders) on six pair tasks people answered: what `manage.py demo` seeds, without its
    model."""
    project = Demo().demo_project()
    simulate_annotators(project, now=timezone.now())
    judge = JudgeFactory(name="scripted-judge")
    job = Job.objects.create(project=project, kind=Job.Kind.JUDGE, status=Job.Status.SUCCEEDED)
    pairs = Task.objects.filter(
        project=project, layout=Task.Layout.PAIR, submissions__annotator__isnull=False
    ).distinct()[:6]
    for index, task in enumerate(pairs):
        first, second = ("A", "B") if index % 3 else ("A", "A")  # a third change with order
        judge_result_save(
            job=job,
            judge=judge,
            task=task,
            outputs=[
                JudgeOutputInput("pairwise", False, first, {"choice": first}),
                JudgeOutputInput("pairwise", True, second, {"choice": second}),
            ],
            feedback=FeedbackInput(pairwise=PairwiseInput("A" if index % 3 else "tie")),
        )
    return project


def test_the_dashboard_leaderboard_and_configuration_of_a_demo_project(
    live_server, watched, demo_like, screenshot
):
    page = watched
    dashboard = f"/projects/{demo_like.pk}/dashboard/"
    log_in(page, live_server.url, "admin", "demo", dashboard)

    # Queue, annotators, answers per hour, time per task, agreement and the judge.
    assert page.locator(SVG_CHART).count() == 6
    assert "%" in page.locator(".tile-value").first.inner_text()
    queue = page.locator("#queue table")
    assert "Pair: pairwise, rationale" in queue.inner_text()
    annotators = page.locator("#annotators tbody tr")
    assert annotators.count() == 4  # three simulated people and the demo's annotator
    assert "maya" in annotators.first.inner_text()
    assert "Pairwise κ with people" in page.locator("#judges").inner_text()
    assert "not enough data yet" not in page.locator("#queue").inner_text()
    screenshot(page, "dashboard")
    configure = page.locator(".project-nav >> text=Configure").get_attribute("href")

    page.click(".project-nav >> text=Leaderboard")
    page.wait_for_url(f"**/projects/{demo_like.pk}/leaderboard/")
    assert "Leaderboard" in page.locator("h1").inner_text()
    # Ratings with intervals and the win-rate heat map, their numbers in tables.
    assert page.locator('img[src^="data:image/svg+xml;base64,"]').count() == 2
    board = page.locator("table").first.inner_text()
    assert all(f"assistant-{size}" in board for size in ("large", "medium", "small"))
    screenshot(page, "leaderboard")

    page.goto(live_server.url + configure)
    names = page.locator("input[name^=aspects-][name$=-name]")
    assert [names.nth(i).input_value() for i in range(4)] == [
        "Instruction following",
        "Truthfulness",
        "Honesty",
        "Helpfulness",
    ]
    assert page.locator("input[name=labels-0-name]").input_value() == "Factual error"
    assert "maya" in page.locator("#member-list").inner_text()
    assert page.locator("#guidelines-preview h1").inner_text() == "How to judge"
    screenshot(page, "configure")


HOSTILE_GUIDELINES = (
    "# Rules\n\nPrefer **correct** answers.\n\n"
    '<script>window.pwned = 1</script>\n\n<img src=x onerror="window.pwned = 2">\n\n'
    "[trap](javascript:window.pwned=3)"
)


def test_a_superuser_creates_a_project_with_an_aspect_a_label_a_member_and_guidelines(
    live_server, watched, screenshot
):
    page = watched
    UserFactory(username="root", is_staff=True, is_superuser=True)
    UserFactory(username="zoë")
    log_in(page, live_server.url, "root", "pw", "/")
    page.click("text=New project")
    page.wait_for_url("**/projects/new/")

    page.fill("input[name=name]", "Support answers 🎧")
    page.check("input[name=kinds][value=rating]")
    page.fill("textarea[name=guidelines]", HOSTILE_GUIDELINES)
    preview = page.locator("#guidelines-preview")
    preview.locator("h1", has_text="Rules").wait_for()
    assert preview.locator("strong").inner_text() == "correct"
    assert preview.locator("script, img").count() == 0
    assert "<script>window.pwned = 1</script>" in preview.inner_text()  # shown as text
    assert page.evaluate("window.pwned") is None
    page.fill("input[name=aspects-0-name]", "Clarity")
    page.fill("input[name=aspects-0-scale_max]", "7")
    page.fill("input[name=labels-0-name]", "Typo")

    # First without a kind of feedback: refused, nothing stored, nothing typed lost.
    for kind in ("pairwise", "rating"):
        page.uncheck(f"input[name=kinds][value={kind}]")
    page.click("button[type=submit]")
    page.locator("text=Pick at least one kind of feedback to collect.").wait_for()
    assert not Project.objects.filter(name="Support answers 🎧").exists()
    assert page.locator("textarea[name=guidelines]").input_value() == HOSTILE_GUIDELINES
    assert page.locator("input[name=aspects-0-name]").input_value() == "Clarity"
    screenshot(page, "create-refused")

    page.check("input[name=kinds][value=rating]")
    page.click("button[type=submit]")
    page.wait_for_url("**/configure/#members")
    project = Project.objects.get(name="Support answers 🎧")

    page.fill("form.member-add input[name=username]", "zoë")
    page.select_option("form.member-add select[name=role]", "annotator")
    page.click("form.member-add button[type=submit]")
    page.locator("#member-list bdi", has_text="zoë").wait_for()
    screenshot(page, "configure-new-project")

    assert [k.value for k in project.feedback_kinds] == ["rating"]
    assert project.guidelines == HOSTILE_GUIDELINES.replace("\n", "\r\n")
    assert list(project.aspects.values_list("name", "scale_max")) == [("Clarity", 7)]
    assert list(project.span_labels.values_list("name", flat=True)) == ["Typo"]
    roles = dict(project.members.values_list("user__username", "role"))
    assert roles == {"root": ProjectMember.Role.ADMIN, "zoë": ProjectMember.Role.ANNOTATOR}
