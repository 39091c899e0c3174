import pytest
from django.db import connection

from feedback.models import Prompt, TaskResponse
from tests.factories import ProjectFactory, PromptFactory, task_with_responses

pytestmark = pytest.mark.django_db


def test_any_matches_the_listed_ids_only():
    project = ProjectFactory()
    prompts = [PromptFactory(project=project) for _ in range(4)]
    wanted = {prompts[0].pk, prompts[2].pk, 10**12}
    assert set(Prompt.objects.filter(pk__any=wanted)) == {prompts[0], prompts[2]}
    assert not Prompt.objects.filter(pk__any=[]).exists()


def test_any_takes_instances_and_ignores_none_as_in_does():
    project = ProjectFactory()
    kept, dropped = PromptFactory(project=project), PromptFactory(project=project)
    assert list(Prompt.objects.filter(pk__any=[kept, None])) == [kept]
    assert list(Prompt.objects.exclude(pk__any=[dropped.pk, None])) == [kept]
    with pytest.raises(TypeError):
        list(Prompt.objects.filter(pk__any="12"))


def test_any_follows_a_foreign_key():
    task = task_with_responses(ProjectFactory(), "pair", 2)
    task_with_responses(task.project, "pair", 2)
    links = TaskResponse.objects.filter(task_id__any=[task.pk])
    assert sorted(links.values_list("position", flat=True)) == [0, 1]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite gets IN (...)")
def test_any_sends_thousands_of_ids_as_one_parameter():
    sql, params = Prompt.objects.filter(pk__any=range(5000)).query.sql_with_params()
    assert len(params) == 1
    assert "ANY" in sql


def test_any_prepares_values_of_another_type_as_in_does():
    """Ints pass as they are to an integer column; anything else is converted."""
    prompt = PromptFactory(project=ProjectFactory(), external_id="7")
    assert list(Prompt.objects.filter(pk__any=[str(prompt.pk)])) == [prompt]
    assert list(Prompt.objects.filter(external_id__any=[7])) == [prompt]
