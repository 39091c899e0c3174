"""Retried writes with an Idempotency-Key header replay the first answer instead of writing
again; the same key for another body is refused; concurrent retries never both write."""

import threading
import uuid

import pytest
from django.db import connection, transaction
from django.urls import reverse

from feedback.models import IdempotencyKey, Project, ProjectMember, Prompt, Response, Task
from feedback.services import idempotency_key_finish, idempotency_key_take
from tests.factories import MemberFactory, PromptFactory, UserFactory
from tests.feedback.api.conftest import client_for

pytestmark = pytest.mark.django_db

ROWS = [
    {  # no "id": nothing but the key tells a retry from a second prompt
        "messages": [
            {"role": "system", "content": "Réponds en français."},
            {"role": "user", "content": "İstanbul nerede? 🌉"},
            {"role": "assistant", "content": "Türkiye'de."},
            {"role": "user", "content": "<script>alert(1)</script> ומה עוד?"},
        ],
        "responses": ["Au bord du Bosphore 🌊", {"text": "<b>Istanbul</b>", "model": "m"}],
    }
]


def post_prompts(client, project, rows, key):
    return client.post(
        reverse("api:prompt-list", args=[project.pk]),
        {"rows": rows},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_a_retried_prompt_import_replays_the_first_answer_and_writes_nothing(admin_client, project):
    key = str(uuid.uuid4())
    first = post_prompts(admin_client, project, ROWS, key)
    tasks = Task.objects.filter(project=project).count()
    again = post_prompts(admin_client, project, ROWS, key)

    assert first.status_code == 201, first.content
    assert "Idempotent-Replayed" not in first.headers
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Prompt.objects.filter(project=project).count() == 1
    assert Response.objects.filter(prompt__project=project).count() == 2
    assert Task.objects.filter(project=project).count() == tasks


def test_a_retried_response_import_adds_its_rows_once(admin_client, project):
    prompt = PromptFactory(project=project, external_id="p1")
    body = {
        "responses": [
            {"prompt_id": prompt.pk, "text": f"Yanit {n} 🙂 İstanbul", "model": "m"}
            for n in range(3)
        ],
        "create_tasks": False,
    }
    url = reverse("api:response-list", args=[project.pk])
    first = admin_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="import-7")
    again = admin_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="import-7")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Response.objects.filter(prompt=prompt).count() == 3


def test_a_retried_project_create_makes_one_project(members):
    members["admin"].is_staff = True
    members["admin"].save()
    client = client_for(members["admin"])
    body = {"name": "Retried 🌍", "guidelines": "<script>alert(1)</script>"}
    url = reverse("api:project-list")
    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="p-1")
    again = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="p-1")

    assert (first.status_code, again.status_code) == (201, 201), first.content
    assert again.json()["id"] == first.json()["id"]
    assert Project.objects.filter(name="Retried 🌍").count() == 1


def test_the_same_key_with_another_body_is_refused_naming_the_header(admin_client, project):
    first = post_prompts(admin_client, project, ROWS, "k-1")
    other = post_prompts(admin_client, project, [{"prompt": "Another?"}], "k-1")

    assert first.status_code == 201
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["errors"]
    assert Prompt.objects.filter(project=project).count() == 1


def test_keys_belong_to_their_user(admin_client, project):
    second_admin = UserFactory(username="admin2")
    MemberFactory(project=project, user=second_admin, role=ProjectMember.Role.ADMIN)
    other = client_for(second_admin)
    first = post_prompts(admin_client, project, ROWS, "shared")
    second = post_prompts(other, project, [{"prompt": "Mine"}], "shared")
    assert (first.status_code, second.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in second.headers


def test_a_refused_request_leaves_the_key_free_for_a_corrected_retry(admin_client, project):
    bad = post_prompts(admin_client, project, [{"prompt": "Blank?", "responses": ["  "]}], "fix")
    good = post_prompts(admin_client, project, ROWS, "fix")

    assert bad.status_code == 400
    assert good.status_code == 201 and "Idempotent-Replayed" not in good.headers
    assert Prompt.objects.filter(project=project).count() == 1


def test_without_a_key_each_request_writes(admin_client, project):
    url = reverse("api:prompt-list", args=[project.pk])
    for _ in range(2):
        assert admin_client.post(url, {"rows": ROWS}, format="json").status_code == 201
    assert Prompt.objects.filter(project=project).count() == 2


def test_an_overlong_key_is_refused(admin_client, project):
    response = post_prompts(admin_client, project, ROWS, "k" * 256)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["errors"]
    assert not Prompt.objects.exists()


def test_an_expired_key_may_be_used_again(admin_client, project, settings):
    post_prompts(admin_client, project, ROWS, "old")
    IdempotencyKey.objects.update(created_at="2000-01-01T00:00:00Z")
    again = post_prompts(admin_client, project, ROWS, "old")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert Prompt.objects.filter(project=project).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_retry_racing_the_first_request_waits_for_it_and_replays_its_answer(
    admin_client, members, project
):
    """The first request holds its key row uncommitted; the retry's insert waits on the
    unique index, then finds the committed answer instead of writing."""
    url = reverse("api:prompt-list", args=[project.pk])
    endpoint = f"POST {url}"
    taken = threading.Event()
    errors = []

    def first_request() -> None:
        try:
            from feedback.api.idempotency import request_fingerprint

            with transaction.atomic():
                record, created = idempotency_key_take(
                    user=members["admin"],
                    key="race",
                    endpoint=endpoint,
                    fingerprint=request_fingerprint({"rows": ROWS}),
                )
                assert created
                taken.set()
                threading.Event().wait(0.5)  # the retry arrives meanwhile
                Prompt.objects.create(project=project, text="x")
                idempotency_key_finish(record=record, status=201, body={"first": True})
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=first_request)
    thread.start()
    assert taken.wait(5)
    retry = post_prompts(admin_client, project, ROWS, "race")
    thread.join()

    assert not errors
    assert retry.status_code == 201
    assert retry.json() == {"first": True}
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert Prompt.objects.filter(project=project).count() == 1
