"""Input the database or the parser cannot take is a 4xx naming the field, never a 500:
over-long ids and model names, deep JSON, bodies over the limit."""

import json

import pytest
from django.urls import reverse

from feedback.models import Prompt, Response
from tests.factories import PromptFactory, UserFactory
from tests.feedback.api.conftest import client_for

pytestmark = pytest.mark.django_db

LONG = "İ" * 201  # 201 characters, more than the varchar(200) columns hold


def post_json(client, url, body: str):
    return client.generic("POST", url, body, content_type="application/json")


def prompts_url(project):
    return reverse("api:prompt-list", args=[project.pk])


def responses_url(project):
    return reverse("api:response-list", args=[project.pk])


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"id": LONG, "prompt": "Hi?", "responses": ["Hello"]}, "row 1.id"),
        (
            {"prompt": "Hi?", "responses": [{"text": "Hello", "model": LONG}]},
            "row 1.responses.0.model",
        ),
    ],
    ids=["external-id", "model"],
)
def test_an_over_long_prompt_id_or_model_name_is_a_field_error(admin_client, project, row, field):
    response = admin_client.post(prompts_url(project), {"rows": [row]}, format="json")
    assert response.status_code == 400, response.content[:300]
    assert "200 characters" in response.json()["errors"][field][0]
    assert not Prompt.objects.exists()


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"prompt_external_id": LONG, "text": "Hello"}, "row 1.prompt_external_id"),
        ({"prompt_external_id": "q", "text": "Hello", "model": LONG}, "row 1.model"),
    ],
    ids=["external-id", "model"],
)
def test_an_over_long_response_reference_or_model_is_a_field_error(
    admin_client, project, row, field
):
    PromptFactory(project=project, external_id="q")
    response = admin_client.post(responses_url(project), {"responses": [row]}, format="json")
    assert response.status_code == 400, response.content[:300]
    assert "200 characters" in response.json()["errors"][field][0]
    assert not Response.objects.exists()


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [2000, 150])
def test_deeply_nested_json_is_a_400_naming_where(admin_client, project, depth):
    body = '{"rows": [{"prompt": "Hi?", "metadata": ' + nested(depth) + "}]}"
    response = post_json(admin_client, prompts_url(project), body)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["detail"].startswith("rows.0.metadata.a.a")
    assert "nested deeper than" in response.json()["detail"]
    assert not Prompt.objects.exists()


def test_metadata_nested_a_few_levels_is_stored(admin_client, project):
    body = '{"rows": [{"prompt": "Hi?", "metadata": ' + nested(20) + "}]}"
    assert post_json(admin_client, prompts_url(project), body).status_code == 201


def test_an_eight_megabyte_import_of_ten_thousand_rows_is_accepted(admin_client, project):
    prompts = [PromptFactory(project=project) for _ in range(100)]
    text = "Réponse <b>gras</b> 🌍 " * 32  # about 800 bytes a row
    rows = [
        {"prompt_id": p.pk, "text": f"{n}: {text}", "model": "m"}
        for p in prompts
        for n in range(100)
    ]
    body = json.dumps({"responses": rows, "create_tasks": False}, ensure_ascii=False)
    assert 7_500_000 < len(body.encode()) < 10_000_000
    response = post_json(admin_client, responses_url(project), body)
    assert response.status_code == 201, response.content[:300]
    assert Response.objects.count() == 10_000


def test_an_import_over_the_limit_gets_a_json_413_naming_it(admin_client, project, settings):
    settings.API_IMPORT_MAX_BYTES = 1000
    rows = [{"prompt": f"Question {n}?"} for n in range(100)]
    response = admin_client.post(prompts_url(project), {"rows": rows}, format="json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json()["limit_bytes"] == 1000
    assert "1000 bytes" in response.json()["detail"]
    assert not Prompt.objects.exists()


def test_another_api_request_over_the_form_limit_gets_a_json_413(admin_client, project, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"guidelines": "x" * 2000})
    response = admin_client.generic(
        "PATCH",
        reverse("api:project-detail", args=[project.pk]),
        body,
        content_type="application/json",
    )
    assert response.status_code == 413
    assert response.json()["limit_bytes"] == 1000


@pytest.mark.parametrize("page_size", ["abc", "0", "-3", ["5", "7"]])
def test_a_bad_page_size_is_a_field_error_not_ignored(admin_client, project, page_size):
    response = admin_client.get(
        reverse("api:prompt-list", args=[project.pk]), {"page_size": page_size}
    )
    assert response.status_code == 400
    assert "page_size" in response.json()


def test_a_page_size_over_the_most_gets_the_most(admin_client, project):
    response = admin_client.get(reverse("api:prompt-list", args=[project.pk]), {"page_size": 5000})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("name", "params"),
    [("project-export", {"shape": ""}), ("project-agreement", {"sources": ""})],
)
def test_an_empty_choice_in_the_query_is_refused_not_read_as_the_default(
    admin_client, project, name, params
):
    response = admin_client.get(reverse(f"api:{name}", args=[project.pk]), params)
    assert response.status_code == 400
    assert list(response.json()) == list(params)


def test_an_empty_prompt_external_id_is_a_field_error(admin_client, project):
    PromptFactory(project=project, external_id="")
    body = {"responses": [{"prompt_external_id": "", "text": "İstanbul 🎉"}]}
    response = admin_client.post(
        reverse("api:response-list", args=[project.pk]), body, format="json"
    )
    assert response.status_code == 400
    assert "at least 1 character" in response.json()["errors"]["row 1.prompt_external_id"][0]


def test_a_feedback_list_says_null_for_a_judges_annotator(admin_client, project, filled):
    from tests.feedback.api.test_schema import SCHEMA

    feedback = SCHEMA["components"]["schemas"]["Feedback"]["properties"]
    assert feedback["annotator"]["nullable"] and feedback["judge"]["nullable"]


@pytest.mark.parametrize("prompt_id", [0, -1, 2**63, 10**30])
def test_a_prompt_id_outside_the_id_range_is_a_field_error(admin_client, project, prompt_id):
    body = {"responses": [{"prompt_id": prompt_id, "text": "<script>alert(1)</script>"}]}
    response = admin_client.post(
        reverse("api:response-list", args=[project.pk]), body, format="json"
    )
    assert response.status_code == 400
    (message,) = response.json()["errors"]["row 1.prompt_id"]
    assert message.startswith("Input should be")


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("task-list", {"layout": ""}),
        ("prompt-list", {"created_after": ""}),
        ("feedback-list", {"kind": ""}),
        ("response-list", {"prompt": ""}),
    ],
)
def test_an_empty_filter_value_is_refused_not_read_as_no_filter(
    admin_client, project, name, params
):
    response = admin_client.get(reverse(f"api:{name}", args=[project.pk]), params)
    assert response.status_code == 400
    assert list(response.json()) == list(params)


def test_an_empty_text_filter_still_means_no_filter(admin_client, project):
    PromptFactory(project=project, external_id="q-İstanbul")
    response = admin_client.get(reverse("api:prompt-list", args=[project.pk]), {"external_id": ""})
    assert response.status_code == 200 and len(response.json()["results"]) == 1


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("project-list", {"name": "İstanbul 🎉", "collects_rating": "true"}),
        ("project-list", {"name": "<script>alert(1)</script>", "ranking_size": "5"}),
        ("response-list", {"responses": [{"text": "x"}], "create_tasks": "1"}),
    ],
)
def test_a_json_body_with_a_string_for_a_boolean_or_number_is_refused(
    admin_client, project, name, body
):
    staff = client_for(UserFactory(username="staff", is_staff=True, is_superuser=True))
    args = [] if name == "project-list" else [project.pk]
    for row in body.get("responses", []):
        row["prompt_id"] = PromptFactory(project=project).pk
    response = staff.post(reverse(f"api:{name}", args=args), body, format="json")
    assert response.status_code == 400
    assert set(response.json()) == set(body) - {"name", "responses"}


def test_an_unknown_path_under_the_api_is_a_json_404_and_a_page_404_stays_html(admin_client):
    response = admin_client.get("/api/projects/İstanbul/prompts/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    page = admin_client.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
