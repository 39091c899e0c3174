"""The OpenAPI schema validates, describes what the API accepts and answers, and a
schema-driven fuzzer with every check on finds no server error."""

import uuid

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.generation.meta import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from feedback.models import Project, Prompt, Response, RewardModel, Task
from tests.factories import JudgeFactory, RewardModelFactory, UserFactory, feedback_fill

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
# The schema and its viewer are drf-spectacular's, not the API.
fuzzed = schemathesis.openapi.from_dict(SCHEMA).exclude(path_regex="^/api/(schema|docs)/")
# Random generation only: the coverage phase's boundary cases take minutes per operation.
fuzzed.config.phases.coverage.enabled = False
# PostgreSQL cannot store NUL; the API refuses it anywhere in a body (tested in
# test_bad_input), a rule the schema states for no free-form object.
fuzzed.config.generation.update(allow_x00=False, allow_extra_parameters=False)
application = get_wsgi_application()
fuzzed.app = application  # calls, and the checks' own probes, go to the WSGI app


def test_openapi_schema_validates(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))
    assert "/api/projects/{project_id}/export/" in SCHEMA["paths"]


def request_schema(path: str) -> dict:
    body = SCHEMA["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return SCHEMA["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]


def test_import_rows_are_described_as_the_api_parses_them():
    schemas = SCHEMA["components"]["schemas"]
    body = request_schema("/api/projects/{project_id}/prompts/")
    assert body["required"] == ["rows"] and body["properties"]["rows"]["minItems"] == 1
    row = schemas["ImportedRow"]
    assert row["oneOf"] == [{"required": ["prompt"]}, {"required": ["messages"]}]
    assert row["additionalProperties"] is False
    text, chat = row["properties"]["prompt"]["oneOf"]
    assert text == {"type": "string", "minLength": 1, "pattern": r"\S"}
    assert chat["items"] == {"$ref": "#/components/schemas/Message"} and chat["minItems"] == 1
    assert row["properties"]["id"]["oneOf"][0] == {"type": "string", "maxLength": 200}
    assert schemas["Message"]["properties"]["role"] == {"$ref": "#/components/schemas/RoleEnum"}
    assert schemas["RoleEnum"]["enum"] == ["system", "user", "assistant"]
    assert schemas["ImportedResponse"]["properties"]["model"]["maxLength"] == 200


def test_response_rows_name_exactly_one_prompt():
    body = request_schema("/api/projects/{project_id}/responses/")
    assert body["required"] == ["responses"]
    row = SCHEMA["components"]["schemas"]["CandidateRow"]
    assert row["oneOf"] == [{"required": ["prompt_id"]}, {"required": ["prompt_external_id"]}]
    assert row["properties"]["prompt_external_id"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
    }
    assert row["properties"]["prompt_id"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 2**63 - 1,
    }
    assert row["required"] == ["text"]


@pytest.fixture
def keep_connection():
    """The WSGI handler closes the connection after each request, which would end the
    test's transaction; Django's own test client unhooks the same signals."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def superuser_token(project, annotator, keep_connection):
    """A superuser's token and a project with feedback of every kind to aim at."""
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    other = UserFactory(username="a1")
    project.members.create(user=other, role="annotator")
    feedback_fill(project, [annotator, other], judge=JudgeFactory())
    Prompt.objects.filter(pk=project.prompts.first().pk).update(external_id="q-İstanbul")
    RewardModelFactory(project=project)
    return Token.objects.create(user=admin).key


# Operations whose valid-looking input may meet rules OpenAPI cannot state, answered with
# their documented 400; every other check still runs on them. The export's options
# combine under rules (no ties column in the unpaired shape, the text form only for plain
# prompts, an aspect of this project); a partial update of a project meets the constraints
# that span its stored fields (free text needs a mode, some kind collected).
# Training and evaluation bodies meet rules of the server's state: a backbone in an
# allowed model directory, an aspect of the project, a project the caller administers.
REWARD_MODEL = "/api/projects/{project_id}/reward-models/{reward_model_id}/"
RULES = {
    ("GET", "/api/projects/{project_id}/export/"),
    ("PATCH", "/api/projects/{project_id}/"),
    ("POST", "/api/projects/{project_id}/reward-models/"),
    ("POST", f"{REWARD_MODEL}evaluate/"),
}
# Writes that start a job or change a state: they answer 200 or 202, and add no project,
# prompt or response.
NOT_CREATES = {
    "/api/projects/{project_id}/reward-models/",
    f"{REWARD_MODEL}activate/",
    f"{REWARD_MODEL}score/",
    f"{REWARD_MODEL}evaluate/",
}


def aim_at(case, project) -> None:
    """Aim the valid parts of a case at this project's data, so a valid body is written,
    not refused for the state it meets: the project in the path, real prompt and task ids
    in filters and response rows, new external ids and project names (they are unique),
    chats that end with a user turn (a rule JSON Schema cannot state)."""

    def negative(location: ParameterLocation) -> bool:
        return case.meta is not None and case.meta.is_negative_at(location)

    reward_model = RewardModel.objects.filter(project=project).first()
    if "project_id" in (case.path_parameters or {}) and not negative(ParameterLocation.PATH):
        case.path_parameters["project_id"] = project.pk
        if "reward_model_id" in case.path_parameters and reward_model is not None:
            case.path_parameters["reward_model_id"] = reward_model.pk
    if (case.headers or {}).get("Idempotency-Key") and not negative(ParameterLocation.HEADER):
        # A key names one request: a generated one met again with another body is refused.
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    query = case.query or {}
    if not negative(ParameterLocation.QUERY):
        for name, model in (("prompt", Prompt), ("task", Task), ("reward_model", RewardModel)):
            if name in query:
                query[name] = model.objects.filter(project=project).first().pk
    if negative(ParameterLocation.BODY):
        return
    if not isinstance(case.body, dict):
        return
    if case.path == "/api/projects/" and isinstance(case.body.get("name"), str):
        # names are unique: a repeat is refused, like a repeated external id below
        case.body["name"] = case.body["name"][:190] + f"-{Project.objects.count()}"
    prompt = Prompt.objects.filter(project=project).exclude(external_id="").first()
    for row in case.body.get("responses") or []:
        if isinstance(row, dict) and "prompt_id" in row:
            row["prompt_id"] = prompt.pk
        elif isinstance(row, dict) and "prompt_external_id" in row:
            row["prompt_external_id"] = prompt.external_id
    for number, row in enumerate(case.body.get("rows") or []):
        if not isinstance(row, dict):
            continue
        if isinstance(row.get("id"), str | int):
            row["id"] = f"{row['id']}"[:190] + f"-{Prompt.objects.count()}-{number}"
        for chat in (row.get("prompt"), row.get("messages")):
            if isinstance(chat, list) and chat and isinstance(chat[-1], dict):
                chat[-1]["role"] = "user"


@pytest.mark.slow
@pytest.mark.django_db
@fuzzed.parametrize()
@settings(max_examples=15, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_pass_every_check(case, project, superuser_token):
    aim_at(case, project)
    valid = case.meta is None or not any(c.mode.is_negative for c in case.meta.components.values())
    writes = case.method == "POST" and valid and case.path not in NOT_CREATES
    before = Project.objects.count() + Prompt.objects.count() + Response.objects.count()
    response = case.call_and_validate(
        headers={"Authorization": f"Token {superuser_token}"},
        excluded_checks=[positive_data_acceptance] if (case.method, case.path) in RULES else [],
    )
    if writes:  # a body valid by the schema is stored, not just not refused
        assert response.status_code == 201, response.text
        assert Project.objects.count() + Prompt.objects.count() + Response.objects.count() > before
