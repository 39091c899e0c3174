"""Admins read answers but neither edit what counts nor delete: submission_create keeps
the history and the leaderboard's counts."""

import pytest
from django.urls import reverse

from feedback.models import PairwiseTally
from feedback.services import FeedbackInput, PairwiseInput, submission_create
from tests.factories import JudgeFactory, UserFactory, task_with_responses

pytestmark = pytest.mark.django_db


def test_an_answer_shows_without_a_current_box_and_cannot_be_deleted(client, project):
    task = task_with_responses(project, "pair", 2)
    submission = submission_create(
        task=task, judge=JudgeFactory(), feedback=FeedbackInput(pairwise=PairwiseInput("A", 1))
    )
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:feedback_submission_change", args=[submission.pk]))
    assert page.status_code == 200
    assert 'name="is_current"' not in page.content.decode()
    deleting = client.post(
        reverse("admin:feedback_submission_delete", args=[submission.pk]), {"post": "yes"}
    )
    assert deleting.status_code == 403
    assert PairwiseTally.objects.get(task=task).judge_first_wins == 1
