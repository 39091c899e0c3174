"""tasks_extend lays responses out in a shuffled display order that its seed reproduces."""

import random

import pytest

from feedback.models import Task
from feedback.services import tasks_extend
from tests.factories import PromptFactory, ResponseFactory

pytestmark = pytest.mark.django_db


def test_display_order_is_shuffled_per_task_and_reproduced_by_its_seed(project):
    prompts = []
    for _ in range(40):
        prompt = PromptFactory(project=project)
        for _ in range(3):
            ResponseFactory(prompt=prompt)
        prompts.append(prompt.pk)
    tasks = tasks_extend(project=project, prompt_ids=prompts)
    pairs = [task for task in tasks if task.layout == Task.Layout.PAIR]
    older_first = 0
    for task in tasks:
        shown = [link.response_id for link in task.links.order_by("position")]
        assert task.display_seed is not None
        assert random.Random(task.display_seed).sample(sorted(shown), len(shown)) == shown
        if task.layout == Task.Layout.PAIR:
            older_first += shown[0] < shown[1]
    # Creation order put the older response on the left of all 120 pairs; now about half.
    assert 30 <= older_first <= 90, older_first  # 5.5 standard deviations
    lists = [task for task in tasks if task.layout == Task.Layout.LIST]
    assert any(
        [link.response_id for link in task.links.order_by("position")]
        != sorted(task.links.values_list("response_id", flat=True))
        for task in lists
    )
    assert len(pairs) == 120
