"""The OpenAPI schema validates, and a schema-driven fuzzer finds no server error."""

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error

from tests.factories import JudgeFactory, UserFactory, feedback_fill

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
fuzzed = schemathesis.openapi.from_dict(SCHEMA)
# Random generation only: the coverage phase's boundary cases take minutes per operation.
fuzzed.config.phases.coverage.enabled = False
application = get_wsgi_application()


def test_openapi_schema_validates(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))
    assert "/api/projects/{project_id}/export/" in SCHEMA["paths"]


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
    return Token.objects.create(user=admin).key


@pytest.mark.django_db
@fuzzed.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzzed_requests_get_no_server_error(case, project, superuser_token):
    if "project_id" in (case.path_parameters or {}):
        case.path_parameters["project_id"] = project.pk  # aim at real data, not a 404
    response = case.call(app=application, headers={"Authorization": f"Token {superuser_token}"})
    case.validate_response(response, checks=[not_a_server_error])
