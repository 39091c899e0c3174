"""A double-clicked (or resent) submit stores one answer: the card carries a key made when
it was rendered, and a second POST with that key answers as the first did."""

import re

import pytest

from feedback.models import Submission
from tests.annotate.cards import next_card
from tests.factories import task_with_responses

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
ANSWER = {"choice": "A", "strength": "3", "rationale": "İstanbul 🚀 <script>alert(1)</script> שלום"}


@pytest.fixture
def held(client, project, annotator):
    task = task_with_responses(project, "pair", 2, text="Ünïcode prompt: مرحبا")
    client.force_login(annotator)
    return task


def card_key(page) -> str:
    match = re.search(rb'name="submit_key" value="([0-9a-f-]{36})"', page.content)
    assert match, "the task card carries no submit key"
    return match.group(1).decode()


def submit(client, project, task, key):
    return client.post(
        f"/projects/{project.pk}/tasks/{task.pk}/submit/", {**ANSWER, "submit_key": key}, **HTMX
    )


def test_a_double_submit_with_the_cards_key_stores_one_answer(client, project, held):
    key = card_key(client.post(f"/projects/{project.pk}/"))

    first = submit(client, project, held, key)
    second = submit(client, project, held, key)

    # Both answer with the same next card: here none is left.
    assert "No task needs you right now" in next_card(first)
    assert "No task needs you right now" in next_card(second)
    submission = Submission.objects.get()
    assert submission.is_current and submission.supersedes is None
    assert submission.texts.get().text == ANSWER["rationale"]


def test_changing_an_answer_from_a_new_card_still_keeps_history(client, project, held):
    first_key = card_key(client.post(f"/projects/{project.pk}/"))
    submit(client, project, held, first_key)
    second_key = card_key(client.get(f"/projects/{project.pk}/tasks/{held.pk}/", **HTMX))

    assert second_key != first_key
    next_card(submit(client, project, held, second_key))
    assert Submission.objects.count() == 2
    assert Submission.objects.filter(is_current=True).count() == 1


def test_the_form_drops_a_second_submit_and_disables_its_buttons_while_sending(
    client, project, held
):
    page = client.post(f"/projects/{project.pk}/").content.decode()
    form = re.search(r'<form id="task-form"[^>]*>', page).group(0)
    assert 'hx-sync="this:drop"' in form
    assert "hx-disabled-elt=" in form
