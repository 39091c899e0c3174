"""Two rounds of the loop on a real Celery worker: the loop turned on picks a first batch
without a model; people label it through the submission service; the answers' commit
starts round 2, which retrains, scores and picks; the annotator's next task is its top
pick, ahead of what round 1 left.

The worker is a subprocess on the test database (committed rows) and Redis; the reward
model is the tiny sentence encoder with a head, trained for seconds.
"""

from __future__ import annotations

import pytest

from feedback import queue
from feedback.loop import loop_config_save
from feedback.models import Job, PairSelection, Project, SelectionRound, Task
from feedback.services import FeedbackInput, PairwiseInput, tasks_extend
from tests.factories import (
    MemberFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
    hard_prompt,
)
from tests.worker.celery_worker import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GOOD = "Paris is the capital of France, on the Seine."
BAD = "I like trains <b>a lot</b> 🚂."


def finished(selection_round: SelectionRound) -> bool:
    selection_round.refresh_from_db()
    job = Job.objects.get(pk=selection_round.job_id)
    return selection_round.finished_at is not None or job.status in ("failed", "cancelled")


def answer(project: Project, annotator) -> Task:
    """Take the next task and prefer the good response, wherever it is shown."""
    task = queue.task_claim_next(project=project, annotator=annotator).task
    first = task.links.order_by("position").first().response.text
    choice = "A" if first.startswith("Paris") else "B"
    queue.task_submit(
        task=task, annotator=annotator, feedback=FeedbackInput(pairwise=PairwiseInput(choice, 2))
    )
    return task


def test_two_rounds_of_the_loop_change_what_people_get_next(
    start_worker,
    tiny_encoder_dir,
    tmp_path,
    settings,
):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    worker = start_worker(ARTIFACT_ROOT=str(settings.ARTIFACT_ROOT))
    project = ProjectFactory(
        collects_rating=False, collects_ranking=False, collects_spans=False,
        collects_free_text=False,
    )  # fmt: skip
    admin, annotator = UserFactory(username="admin"), UserFactory(username="ann")
    MemberFactory(project=project, user=admin, role="admin")
    MemberFactory(project=project, user=annotator)
    # Pairs by selection first: the responses then make no pair tasks.
    loop_config_save(
        project=project,
        user=admin,
        changes={
            "pairs_by_selection": True,
            "selector": "margin",
            "batch_size": 8,
            "random_share": 0.0,
            "retrain_every": 6,
            "max_pairs_per_prompt": 6,
            "reward_options": {
                "name": "Loop",
                "backbone": str(tiny_encoder_dir),
                "backbone_kind": "embedding",
                "training": {
                    "batch_size": 8,
                    "max_epochs": 2,
                    "max_length": 32,
                    "learning_rate": 0.001,
                    "heads": 2,
                },
            },
        },
    )
    for index in range(6):
        prompt = PromptFactory(project=project, **hard_prompt(index, chat=True))
        for variant in range(2):
            ResponseFactory(prompt=prompt, text=f"{GOOD} ({variant})")
            ResponseFactory(prompt=prompt, text=f"{BAD} ({variant})")
        tasks_extend(project=project, prompt_ids=[prompt.pk])
    assert not Task.objects.filter(project=project).exists()

    loop_config_save(project=project, user=admin, changes={"is_on": True})
    first = SelectionRound.objects.get(project=project)
    wait_for(lambda: finished(first), 180, worker.output)

    assert Job.objects.get(pk=first.job_id).status == Job.Status.SUCCEEDED, worker.output()
    assert (first.trigger, first.selector_used) == ("loop_on", "dissimilar")
    assert first.reward_model is None
    assert first.fallback == "No reward model yet: embedding-dissimilar pairs."
    assert first.picked == 8 == Task.objects.filter(project=project).count()

    # People answer six of the eight; the sixth answer's commit starts round 2.
    for _ in range(6):
        answer(project, annotator)
    second = SelectionRound.objects.get(project=project, number=2)
    assert second.trigger == "labels"
    wait_for(lambda: finished(second), 240, worker.output)

    assert Job.objects.get(pk=second.job_id).status == Job.Status.SUCCEEDED, worker.output()
    assert second.retrained and second.reward_model.is_active
    assert second.reward_model.data_snapshot["comparisons"] == 6
    assert second.people_labels == 6 and 0 <= second.held_out_accuracy <= 1
    assert second.selector_used == "margin" and second.fallback == ""
    assert second.reward_model.scores.count() == 24  # every response, both heads
    assert len(second.reward_model.scores.first().head_scores) == 2
    assert {"train and score", "select"} <= set(second.timings)

    # Round 1 left two tasks; round 2's picks come before them, its top pick first.
    top = PairSelection.objects.get(round=second, rank=0)
    leftovers = set(
        PairSelection.objects.filter(round=first, task__is_full=False).values_list(
            "task_id", flat=True
        )
    )
    assert len(leftovers) == 2 and top.task_id not in leftovers
    served = queue.task_claim_next(project=project, annotator=annotator).task
    assert served.pk == top.task_id
