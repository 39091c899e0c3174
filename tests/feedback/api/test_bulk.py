"""Imports over the API: file-import validation, one transaction, errors naming row and field."""

import pytest
from django.urls import reverse

from feedback import services
from feedback.models import Prompt, Response, Task, TaskResponse
from tests.factories import PromptFactory
from tests.feedback.services.test_prompts_import_batches import numbered_rows

pytestmark = pytest.mark.django_db


def test_prompts_import_over_the_api_creates_prompts_responses_and_tasks(admin_client, project):
    rows = [
        {"id": "q1", "prompt": "What is 2+2?", "responses": ["4", {"text": "Four", "model": "m"}]},
        {"messages": [{"role": "user", "content": "Hi"}], "responses": ["Hello", "Hey"]},
    ]
    response = admin_client.post(
        reverse("api:prompt-list", args=[project.pk]), {"rows": rows}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["prompts"] == 2 and response.json()["responses"] == 4
    assert Task.objects.filter(project=project, layout="pair").count() == 2


def test_one_bad_prompt_row_refuses_the_request_naming_row_and_field(admin_client, project):
    rows = [
        {"prompt": "Fine?", "responses": ["Yes"]},
        {"prompt": "Also fine?", "responses": [{"text": "   "}]},
        {"prompt": "Extra?", "colour": "blue"},
    ]
    response = admin_client.post(
        reverse("api:prompt-list", args=[project.pk]), {"rows": rows}, format="json"
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    # The same messages as the file import, which names the union member tried.
    assert errors["row 2.responses.0.text"] == ["response text is blank"]
    assert "row 3.colour" in errors
    assert not Prompt.objects.exists()


def test_ten_thousand_responses_are_created_in_one_request(admin_client, project):
    prompts = [PromptFactory(project=project, external_id=f"p{i}") for i in range(100)]
    rows = [
        {"prompt_id": prompt.pk, "text": f"Answer {n} to {prompt.pk}.", "model": "m"}
        for prompt in prompts
        for n in range(100)
    ]
    response = admin_client.post(
        reverse("api:response-list", args=[project.pk]),
        {"responses": rows, "create_tasks": False},
        format="json",
    )
    assert response.status_code == 201, response.content[:500]
    assert response.json()["responses"] == 10_000
    assert Response.objects.filter(prompt__project=project).count() == 10_000


def test_one_bad_response_row_in_ten_thousand_stores_nothing(admin_client, project):
    prompt = PromptFactory(project=project, external_id="only")
    rows = [{"prompt_external_id": "only", "text": f"Answer {n}."} for n in range(10_000)]
    rows[7320]["text"] = ""
    rows[9999] = {"prompt_id": 10**9, "text": "Lost."}
    response = admin_client.post(
        reverse("api:response-list", args=[project.pk]), {"responses": rows}, format="json"
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"row 7321.text", "row 10000.prompt_id"}
    assert not Response.objects.filter(prompt=prompt).exists()


def test_new_responses_get_the_tasks_the_project_collects_on(admin_client, project):
    prompt = PromptFactory(project=project, external_id="q")
    rows = [{"prompt_external_id": "q", "text": text} for text in ("One.", "Two.", "Three.")]
    response = admin_client.post(
        reverse("api:response-list", args=[project.pk]), {"responses": rows}, format="json"
    )
    assert response.status_code == 201
    layouts = sorted(Task.objects.filter(prompt=prompt).values_list("layout", flat=True))
    assert layouts == ["list", "pair", "pair", "pair", "single", "single", "single"]


def test_text_with_a_nul_character_is_refused_not_a_server_error(admin_client, project):
    response = admin_client.post(
        reverse("api:prompt-list", args=[project.pk]),
        {"rows": [{"prompt": "fine", "responses": ["x"]}, {"prompt": "bad\u0000"}]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("rows.1.prompt: contains the NUL character")


def test_a_request_of_many_rows_stores_every_row_once(admin_client, project, monkeypatch):
    monkeypatch.setattr(services, "IMPORT_BATCH_ROWS", 4)  # 11 rows cross three batches
    response = admin_client.post(
        reverse("api:prompt-list", args=[project.pk]), {"rows": numbered_rows(11)}, format="json"
    )
    assert response.status_code == 201, response.content
    prompts = Prompt.objects.filter(project=project)
    assert sorted(response.json()["prompt_ids"]) == sorted(prompts.values_list("pk", flat=True))
    assert sorted(prompts.values_list("external_id", flat=True)) == sorted(
        f"q{n}" for n in range(11)
    )
    assert Response.objects.filter(prompt__project=project).count() == 22
    chat = prompts.get(external_id="q9")
    assert chat.text == "" and chat.messages[0]["role"] == "system"
    # Per prompt of two responses: two single tasks, one pair, one list.
    assert Task.objects.filter(project=project).count() == response.json()["tasks"] == 44
    pair = Task.objects.get(prompt=chat, layout="pair")
    assert set(pair.links.values_list("response__prompt", flat=True)) == {chat.pk}
    assert TaskResponse.objects.filter(task__project=project).count() == 11 * (2 + 2 + 2)
