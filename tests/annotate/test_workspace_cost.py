"""The annotator's two requests (next card, pairwise answer) read few rows: the user and the
membership come from the cache, and a change to either still takes effect at once."""

import re

import pytest

from feedback.models import ProjectMember, Submission
from tests.annotate.cards import next_card
from tests.factories import task_with_responses

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def tasks(project):
    return [task_with_responses(project, "pair", 2) for _ in range(2)]


def test_a_card_and_an_answer_take_few_queries(
    client, project, annotator, tasks, django_assert_max_num_queries
):
    client.force_login(annotator)
    client.get(f"/projects/{project.pk}/")  # the page: user and membership now cached
    # The claim; the annotator's place with the responses; and, once every few seconds, a look
    # for lapsed leases. Each write takes a savepoint here (the test's transaction): +2.
    with django_assert_max_num_queries(5):
        card = client.post(f"/projects/{project.pk}/", **HTMX).content.decode()
    task_id = re.search(r'data-task-id="(\d+)"', card).group(1)
    key = re.search(r'name="submit_key" value="([0-9a-f-]+)"', card).group(1)
    # The task; the lease marked submitted; the answer, its choice and the pair's tally;
    # then the next card as above.
    with django_assert_max_num_queries(11):
        response = client.post(
            f"/projects/{project.pk}/tasks/{task_id}/submit/",
            {"choice": "A", "strength": "2", "submit_key": key},
            **HTMX,
        )
    next_card(response)
    assert Submission.objects.get().pairwise.choice == "A"


def test_a_removed_member_is_refused_at_once(client, project, annotator, tasks):
    client.force_login(annotator)
    assert client.get(f"/projects/{project.pk}/").status_code == 200
    ProjectMember.objects.filter(project=project, user=annotator).delete()
    assert client.get(f"/projects/{project.pk}/").status_code == 404


def test_a_new_password_ends_the_other_sessions_at_once(client, project, annotator, tasks):
    client.force_login(annotator)
    assert client.get(f"/projects/{project.pk}/").status_code == 200
    annotator.set_password("a new password, elsewhere")
    annotator.save()
    assert client.post(f"/projects/{project.pk}/", **HTMX).status_code == 401
