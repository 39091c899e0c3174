"""The workspace over HTTP: who may see it, htmx partials, submit and skip answers."""

import json
import re

import pytest

from feedback.models import Assignment, FreeTextFeedback, ProjectMember, SpanFeedback, Submission
from tests.annotate.cards import next_card
from tests.factories import (
    MemberFactory,
    ProjectFactory,
    UserFactory,
    hard_prompt,
    task_with_responses,
)

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def client_of(client):
    def log_in(user):
        client.force_login(user)
        return client

    return log_in


def test_the_workspace_serves_the_next_task_in_a_full_page(client_of, project, annotator):
    task = task_with_responses(project, "pair", 2)
    response = client_of(annotator).post(f"/projects/{project.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html and f'data-task-id="{task.pk}"' in html
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert Assignment.objects.get().annotator == annotator


def test_a_claimed_chat_shows_every_turn_escaped_and_its_responses_in_order(
    client_of, project, annotator
):
    """The claim reads the task, prompt and responses in its own statements: the chat's
    JSON turns arrive parsed, hostile text escaped, the responses in display order."""
    task = task_with_responses(
        project, "pair", 2, texts=["First <script>x()</script>", "Second é"], **hard_prompt(4, True)
    )
    html = client_of(annotator).post(f"/projects/{project.pk}/", **HTMX).content.decode()
    assert f'data-task-id="{task.pk}"' in html
    roles = [turn["role"] for turn in task.prompt.messages]
    assert roles == ["system", "user", "assistant", "user"]
    for role in roles:
        assert f'class="turn turn-{role}"' in html
    assert "Réponds en &lt;b&gt;HTML&lt;/b&gt;" in html and "<b>HTML</b>" not in html
    assert "<script>" not in html and html.index("First &lt;script&gt;") < html.index("Second é")


def test_an_htmx_request_gets_only_the_task_card(client_of, project, annotator):
    task_with_responses(project, "pair", 2)
    html = client_of(annotator).post(f"/projects/{project.pk}/", **HTMX).content.decode()
    assert html.lstrip().startswith('<section id="task-card"')
    assert "<html" not in html


@pytest.mark.parametrize("role", [None, ProjectMember.Role.VIEWER])
def test_only_annotators_and_admins_of_the_project_may_annotate(client_of, project, role):
    user = UserFactory()
    if role:
        MemberFactory(project=project, user=user, role=role)
    task_with_responses(project, "pair", 2)
    assert client_of(user).get(f"/projects/{project.pk}/").status_code == 404
    assert client_of(user).post(f"/projects/{project.pk}/").status_code == 404
    assert not Assignment.objects.exists()


def test_a_task_the_annotator_never_had_cannot_be_opened(client_of, project, annotator):
    task = task_with_responses(project, "pair", 2)
    url = f"/projects/{project.pk}/tasks/{task.pk}/"
    assert client_of(annotator).get(url).status_code == 404
    assert client_of(annotator).post(url + "submit/", {"choice": "A"}).status_code == 404


def test_submit_answers_with_the_next_card_in_place_of_the_answered_one(
    client_of, project, annotator
):
    task, following = (task_with_responses(project, "pair", 2) for _ in range(2))
    client = client_of(annotator)
    client.post(f"/projects/{project.pk}/")
    response = client.post(
        f"/projects/{project.pk}/tasks/{task.pk}/submit/",
        {"choice": "A", "strength": "1", "rationale": "Shorter.", "duration_ms": "5300"},
        **HTMX,
    )
    card = next_card(response)
    assert f'data-task-id="{following.pk}"' in card and "<html" not in card
    assert Assignment.objects.get(task=following).status == Assignment.Status.ACTIVE
    submission = Submission.objects.get()
    assert (submission.pairwise.choice, submission.duration_ms) == ("A", 5300)
    assert submission.texts.get().mode == FreeTextFeedback.Mode.RATIONALE


def test_a_missing_choice_is_reported_in_the_error_box_only(client_of, project, annotator):
    task = task_with_responses(project, "pair", 2)
    client = client_of(annotator)
    client.post(f"/projects/{project.pk}/")
    response = client.post(f"/projects/{project.pk}/tasks/{task.pk}/submit/", {}, **HTMX)
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#task-errors"
    assert "Choose A, B or tie." in response.content.decode()
    assert not Submission.objects.exists()


def test_spans_are_stored_at_the_posted_character_offsets(client_of, annotator):
    project = ProjectFactory(
        collects_pairwise=False, collects_rating=False, collects_free_text=False
    )
    MemberFactory(project=project, user=annotator)
    label = project.span_labels.create(name="Error")
    text = "Naïve 😀 text"
    task = task_with_responses(project, "single", 1, texts=[text])
    client = client_of(annotator)
    client.post(f"/projects/{project.pk}/")
    response_id = task.links.get().response_id
    spans = [{"response_id": response_id, "label_id": label.pk, "start": 6, "end": 7}]
    client.post(
        f"/projects/{project.pk}/tasks/{task.pk}/submit/", {"spans": json.dumps(spans)}, **HTMX
    )
    span = SpanFeedback.objects.get()
    assert text[span.start : span.end] == "😀"


def test_an_untouched_rewrite_sent_with_crlf_line_breaks_is_not_a_rewrite(client_of, annotator):
    project = ProjectFactory(
        collects_pairwise=False,
        collects_rating=False,
        collects_spans=False,
        asks_rationale=False,
    )
    MemberFactory(project=project, user=annotator)
    task = task_with_responses(project, "single", 1, texts=["line one\nline two"])
    client = client_of(annotator)
    client.post(f"/projects/{project.pk}/")
    rid = task.links.get().response_id
    client.post(
        f"/projects/{project.pk}/tasks/{task.pk}/submit/",
        {f"rewrite-{rid}": "line one\r\nline two", f"critique-{rid}": "Fine."},
        **HTMX,
    )
    assert list(FreeTextFeedback.objects.values_list("mode", flat=True)) == ["critique"]


def test_skip_answers_204_and_records_the_skip(client_of, project, annotator):
    task = task_with_responses(project, "pair", 2)
    client = client_of(annotator)
    client.post(f"/projects/{project.pk}/")
    response = client.post(f"/projects/{project.pk}/tasks/{task.pk}/skip/", **HTMX)
    assert "No task needs you right now" in next_card(response)
    assert Assignment.objects.get().status == Assignment.Status.SKIPPED


def test_the_card_counts_the_answers_and_goes_back_one_answer_at_a_time(
    client_of, project, annotator
):
    """ "Previous" leads to the answer before the one shown, in the order they were given."""
    tasks = [task_with_responses(project, "pair", 2) for _ in range(4)]
    client = client_of(annotator)
    card = client.post(f"/projects/{project.pk}/", **HTMX).content.decode()
    answered = []
    for _ in range(3):
        task_id = int(re.search(r'data-task-id="(\d+)"', card).group(1))
        answered.append(task_id)
        url = f"/projects/{project.pk}/tasks/{task_id}/submit/"
        card = next_card(client.post(url, {"choice": "A", "strength": "1"}, **HTMX))

    def previous(html: str) -> int | None:
        found = re.search(r"/tasks/(\d+)/\" hx-target=\"#task-card\"[^>]*>← Previous", html)
        return int(found.group(1)) if found else None

    assert f"You: 3 / {len(tasks)}" in card and previous(card) == answered[2]
    for shown, before in ((answered[2], answered[1]), (answered[1], answered[0])):
        html = client.get(f"/projects/{project.pk}/tasks/{shown}/", **HTMX).content.decode()
        assert f'data-task-id="{shown}"' in html and previous(html) == before
        assert f"You: 3 / {len(tasks)}" in html
    first = client.get(f"/projects/{project.pk}/tasks/{answered[0]}/", **HTMX).content.decode()
    assert previous(first) is None
