"""The dashboard's reads: the queue per kind of task, each annotator's progress, answers
per hour and time per task, counted in the database; and the page and API that show them."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from feedback import queue
from feedback.dashboard import (
    Durations,
    annotator_progress_table,
    answers_per_hour,
    projects_overview,
    queue_progress,
    time_per_task,
)
from feedback.models import ProjectMember, Submission, Task
from feedback.services import FeedbackInput, PairwiseInput
from tests.factories import MemberFactory, ProjectFactory, UserFactory, task_with_responses

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)


def at(hour: int, minute: int) -> datetime:
    return NOW.replace(hour=hour, minute=minute)


def answer(project, user, expected: Task, when: datetime, seconds: int) -> None:
    """`user` takes their next task (it must be `expected`) and answers A after `seconds`."""
    assert queue.task_claim_next(project=project, annotator=user, now=when).task == expected
    done = when + timedelta(seconds=seconds)
    submission = queue.task_submit(
        task=expected,
        annotator=user,
        feedback=FeedbackInput(pairwise=PairwiseInput("A", 1)),
        duration_ms=seconds * 1000,
        now=done,
    )
    Submission.objects.filter(pk=submission.pk).update(created_at=done)


@pytest.fixture
def scene(project):
    """Two annotators per task; three pair tasks and a single one. ada answers the first
    two pairs (10 s, 30 s), bo the first (20 s) and skips the second, cy holds the second
    open; dee is an annotator who has done nothing, vic a viewer."""
    project.annotators_per_task = 2
    project.save()
    pairs = [task_with_responses(project, Task.Layout.PAIR, 2) for _ in range(3)]
    single = task_with_responses(project, Task.Layout.SINGLE, 1)
    people = {}
    for name in ("ada", "bo", "cy", "dee"):
        people[name] = UserFactory(username=name)
        MemberFactory(project=project, user=people[name], role=ProjectMember.Role.ANNOTATOR)
    MemberFactory(project=project, user=UserFactory(username="vic"), role="viewer")
    answer(project, people["ada"], pairs[0], at(10, 5), 10)
    answer(project, people["ada"], pairs[1], at(10, 40), 30)
    answer(project, people["bo"], pairs[0], at(11, 15), 20)
    claimed = queue.task_claim_next(project=project, annotator=people["bo"], now=at(11, 19))
    assert claimed.task == pairs[1]
    queue.task_skip(task=pairs[1], annotator=people["bo"], now=at(11, 20))
    held = queue.task_claim_next(project=project, annotator=people["cy"], now=at(12, 25))
    assert held.task == pairs[1]
    return {"pairs": pairs, "single": single, **people}


def test_queue_progress_counts_done_started_and_open_tasks_per_layout(project, scene):
    single, pair = queue_progress(project=project, now=NOW)

    assert (single.layout, single.tasks, single.done, single.in_progress, single.open) == (
        "single",
        1,
        0,
        0,
        1,
    )
    assert (single.answers, single.needed, single.percent) == (0, 2, 0)
    # First pair: both answers. Second: one answer and cy's lease. Third: nobody.
    assert (pair.tasks, pair.done, pair.in_progress, pair.open) == (3, 1, 1, 1)
    assert (pair.answers, pair.needed, pair.percent) == (3, 6, 50)
    assert pair.label.startswith("Pair: pairwise")


def test_a_lapsed_lease_is_not_work_in_progress(project, scene):
    later = NOW + timedelta(minutes=project.lease_minutes + 1)
    pair = queue_progress(project=project, now=later)[1]
    assert (pair.done, pair.in_progress, pair.open) == (1, 1, 1)  # the answered one stays
    cy_only = annotator_progress_table(project=project, now=later)
    assert next(row for row in cy_only if row.username == "cy").holding == 0


def test_answers_per_hour_are_hour_buckets_with_the_empty_hours_and_the_skips(
    project, scene, django_assert_max_num_queries
):
    with django_assert_max_num_queries(2):
        hours = answers_per_hour(project=project, hours=4, now=NOW)

    assert [(h.hour.hour, h.answers, h.skips) for h in hours] == [
        (9, 0, 0),
        (10, 2, 0),
        (11, 1, 1),
        (12, 0, 0),
    ]


def test_time_per_task_gives_nearest_rank_median_and_p90_per_layout(project, scene):
    timing = time_per_task(project=project)

    assert timing.overall == Durations(count=3, median_s=20.0, p90_s=30.0)
    assert timing.by_layout == {"pair": Durations(3, 20.0, 30.0)}
    histogram = dict(timing.histogram)
    assert (histogram["0-10 s"], histogram["10-20 s"], histogram["20-40 s"]) == (0, 1, 2)
    assert sum(histogram.values()) == 3


def test_annotator_progress_lists_each_annotators_answers_skips_and_pace(project, scene):
    rows = {row.username: row for row in annotator_progress_table(project=project, now=NOW)}

    assert list(rows) == ["ada", "bo", "cy", "dee"]  # most answers first; vic only views
    ada, bo, cy, dee = rows.values()
    assert (ada.submitted, ada.skipped, ada.holding, ada.tasks) == (2, 0, 0, 4)
    assert (ada.durations.median_s, ada.durations.p90_s, ada.percent) == (10.0, 30.0, 50)
    assert ada.last_answer == at(10, 40) + timedelta(seconds=30)
    assert (bo.submitted, bo.skipped, bo.skip_rate) == (1, 1, 0.5)
    assert (cy.submitted, cy.holding, cy.durations.count) == (0, 1, 0)
    assert (dee.submitted, dee.role, dee.last_answer) == (0, "annotator", None)


def test_the_project_list_shows_progress_and_answers_given_today(project, scene):
    other = ProjectFactory()
    MemberFactory(project=other, user=scene["ada"], role=ProjectMember.Role.VIEWER)

    rows = {row.project.pk: row for row in projects_overview(scene["ada"], now=NOW)}

    mine = rows[project.pk]
    assert (mine.role, mine.tasks, mine.answers, mine.needed, mine.percent) == (
        "annotator",
        4,
        3,
        8,
        38,
    )
    assert mine.answers_today == 3 and mine.annotates and not mine.reads_reports
    assert (rows[other.pk].tasks, rows[other.pk].answers_today) == (0, 0)
    tomorrow = projects_overview(scene["ada"], now=NOW + timedelta(days=1))
    assert {row.project.pk: row.answers_today for row in tomorrow}[project.pk] == 0


def test_the_dashboard_draws_its_charts_with_their_numbers_beside_them(client, project, scene):
    client.force_login(UserFactory(username="vic"))

    html = client.get(reverse("feedback:project-dashboard", args=[project.pk])).content.decode()

    # The queue, the annotators and time per task; the scene is too old for the last 48
    # hours' chart and too unanimous for agreement.
    assert html.count('src="data:image/svg+xml;base64,') == 3
    assert "No answers in the last 48 hours." in html
    for figure in ("3 / 6", "Pair: pairwise", "<bdi>ada</bdi>", "20-40 s", "Pairwise: Fleiss"):
        assert figure in html
    assert "n/a" not in html
    # Viewers get the reports, not the admin's pages.
    assert reverse("feedback:project-leaderboard", args=[project.pk]) in html
    assert reverse("feedback:project-configure", args=[project.pk]) not in html


def test_the_dashboard_api_gives_the_same_figures(client, project, scene):
    client.force_login(UserFactory(username="vic"))

    board = client.get(reverse("api:project-dashboard", args=[project.pk])).json()

    assert [row["answers"] for row in board["queue"]] == [0, 3]
    assert board["time_per_task"]["overall"] == {"count": 3, "median_s": 20.0, "p90_s": 30.0}
    assert board["annotators"][0]["username"] == "ada"
    assert len(board["answers_per_hour"]) == 48


def test_an_empty_project_says_what_to_do_instead_of_n_a(client, project):
    admin = UserFactory(username="boss")
    MemberFactory(project=project, user=admin, role=ProjectMember.Role.ADMIN)
    client.force_login(admin)

    html = client.get(reverse("feedback:project-dashboard", args=[project.pk])).content.decode()

    assert "No tasks yet." in html and "No annotators yet." in html
    assert reverse("annotate:project-jobs", args=[project.pk]) in html
    assert "data:image/svg+xml" not in html and "n/a" not in html
    agreement = client.get(reverse("feedback:project-agreement", args=[project.pk]))
    assert "n/a" not in agreement.content.decode()
    assert "one annotator per task" in agreement.content.decode()
