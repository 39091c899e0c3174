"""The management command and the admin page import files through the same rules."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from feedback.models import Project, Prompt
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

GOOD = '{"id": "x1", "prompt": "Hi?", "responses": ["Hello.", "Hey."]}\n'
BAD = GOOD + '{"id": "x2", "prompt": "Hi?", "responses": [{"txt": "typo"}]}\n'


def test_command_imports_a_file(project, tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    path.write_text(GOOD)
    call_command("import_prompts", project.name, str(path))
    assert "Imported 1 prompts, 2 responses" in capsys.readouterr().out
    assert Prompt.objects.filter(project=project, external_id="x1").exists()


def test_command_refuses_a_bad_file_naming_line_and_field(project, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(BAD)
    with pytest.raises(CommandError, match=r"line 2, field 'responses.0.text'"):
        call_command("import_prompts", str(project.pk), str(path))
    assert not Prompt.objects.exists()


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_admin_imports_an_uploaded_file(admin_client, project):
    url = reverse("admin:feedback_project_import", args=[project.pk])
    upload = SimpleUploadedFile("rows.jsonl", GOOD.encode())
    response = admin_client.post(url, {"file": upload}, follow=True)
    assert "Imported 1 prompts, 2 responses" in response.content.decode()
    assert project.prompts.count() == 1


def test_admin_shows_the_errors_of_a_bad_file_and_stores_nothing(admin_client, project):
    url = reverse("admin:feedback_project_import", args=[project.pk])
    upload = SimpleUploadedFile("rows.jsonl", BAD.encode())
    response = admin_client.post(url, {"file": upload})
    assert "line 2, field &#x27;responses.0.text&#x27;" in response.content.decode()
    assert not project.prompts.exists()


def test_admin_creates_a_project_with_aspects_labels_and_members(admin_client):
    annotator = UserFactory(username="ann")
    form = {
        "name": "Helpfulness study",
        "guidelines": "# Judge carefully",
        "collects_rating": "on",
        "collects_spans": "on",
        "ranking_size": "4",
        "annotators_per_task": "3",
        "lease_minutes": "20",
        "aspects-TOTAL_FORMS": "1",
        "aspects-INITIAL_FORMS": "0",
        "aspects-0-name": "Helpfulness",
        "aspects-0-rubric": "1 useless, 7 perfect",
        "aspects-0-scale_min": "1",
        "aspects-0-scale_max": "7",
        "aspects-0-position": "0",
        "span_labels-TOTAL_FORMS": "1",
        "span_labels-INITIAL_FORMS": "0",
        "span_labels-0-name": "Hallucination",
        "span_labels-0-color": "#ff0000",
        "span_labels-0-default_severity": "major",
        "span_labels-0-position": "0",
        "members-TOTAL_FORMS": "1",
        "members-INITIAL_FORMS": "0",
        "members-0-user": str(annotator.pk),
        "members-0-role": "annotator",
    }
    response = admin_client.post(reverse("admin:feedback_project_add"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    project = Project.objects.get(name="Helpfulness study")
    assert project.annotators_per_task == 3
    assert json.dumps([a.scale_max for a in project.aspects.all()]) == "[7]"
    assert project.span_labels.get().color == "#ff0000"
    assert project.members.get().user == annotator


def test_admin_refuses_a_project_that_collects_nothing(admin_client):
    form = {
        "name": "Nothing",
        "ranking_size": "4",
        "annotators_per_task": "1",
        "lease_minutes": "30",
        **{
            f"{p}-{k}": "0"
            for p in ("aspects", "span_labels", "members")
            for k in ("TOTAL_FORMS", "INITIAL_FORMS")
        },
    }
    response = admin_client.post(reverse("admin:feedback_project_add"), form)
    assert response.status_code == 200
    assert "A project must collect at least one kind of feedback." in response.content.decode()
    assert not Project.objects.filter(name="Nothing").exists()
