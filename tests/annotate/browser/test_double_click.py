"""Double-clicks in the browser write once: one answer per card, one job per Start."""

import pytest

import worker.tasks  # noqa: F401 (loaded here, not within the timed page wait below)
from feedback.models import Job, ProjectMember, Submission
from tests.factories import (
    JudgeFactory,
    MemberFactory,
    ProjectFactory,
    UserFactory,
    task_with_responses,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_double_clicked_submit_stores_one_answer(page, open_workspace):
    project = ProjectFactory(
        collects_rating=False,
        collects_ranking=False,
        collects_spans=False,
        asks_critique=False,
        asks_rewrite=False,
    )
    task_with_responses(project, "pair", 2, texts=["İstanbul 🌉", "<script>alert(1)</script>"])
    task_with_responses(project, "pair", 2, texts=["שלום", "Hello"])
    open_workspace(project)
    first = page.get_attribute("#task-card", "data-task-id")
    page.get_by_role("radio", name="B is better").check()
    page.get_by_role("radio", name="Much").check()

    page.locator("button[data-action=submit]").dblclick()

    page.wait_for_function(
        "id => document.querySelector('#task-card').dataset.taskId !== id", arg=first
    )
    assert Submission.objects.filter(task_id=int(first)).count() == 1


def test_a_double_clicked_start_makes_one_job(live_server, page):
    project = ProjectFactory(collects_rating=False, collects_ranking=False, collects_spans=False)
    admin = UserFactory(username="boss")
    MemberFactory(project=project, user=admin, role=ProjectMember.Role.ADMIN)
    JudgeFactory(name="judge-İ", model_name="org/tiny")
    page.set_default_timeout(5000)
    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{project.pk}/jobs/")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", "pw")
    page.click("button[type=submit]")
    page.select_option("select[name=judge]", label="judge-İ")

    # The job starts and runs (eagerly, with no tasks to judge) within the request.
    page.get_by_role("button", name="Start judging").dblclick()

    page.wait_for_selector(".jobs .job", timeout=20_000)
    assert Job.objects.filter(project=project).count() == 1
