"""List filters that take an id answer for another project's id as for an id that does
not exist, so that they do not tell which ids exist outside the caller's projects."""

import pytest
from django.urls import reverse

from feedback.models import Task
from tests.factories import ProjectFactory, task_with_responses

pytestmark = pytest.mark.django_db

FILTERS = [
    ("api:response-list", "prompt"),
    ("api:task-list", "prompt"),
    ("api:feedback-list", "task"),
]


def ids_of(task: Task, parameter: str) -> int:
    return task.prompt_id if parameter == "prompt" else task.pk


@pytest.mark.parametrize(("name", "parameter"), FILTERS)
def test_a_foreign_id_answers_as_a_missing_one(admin_client, project, name, parameter):
    foreign = ids_of(task_with_responses(ProjectFactory(), Task.Layout.PAIR, 2), parameter)
    url = reverse(name, args=[project.pk])
    missing = admin_client.get(url, {parameter: foreign + 10_000})
    other = admin_client.get(url, {parameter: foreign})
    assert (other.status_code, other.json()) == (missing.status_code, missing.json())


@pytest.mark.parametrize(("name", "parameter"), FILTERS)
def test_an_id_of_the_project_still_filters(admin_client, project, name, parameter):
    task = task_with_responses(project, Task.Layout.PAIR, 2, text="İstanbul <script>x</script>")
    task_with_responses(project, Task.Layout.PAIR, 2)
    url = reverse(name, args=[project.pk])
    response = admin_client.get(url, {parameter: ids_of(task, parameter)})
    assert response.status_code == 200
    if name == "api:response-list":
        assert {row["prompt"] for row in response.json()["results"]} == {task.prompt_id}
    elif name == "api:task-list":
        assert [row["id"] for row in response.json()["results"]] == [task.pk]
