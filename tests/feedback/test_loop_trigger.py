"""The loop's trigger: people's pairwise answers, once committed, start the next round when
the batch is answered (concurrent answers: tests/worker/test_loop_trigger_race.py)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from feedback import queue
from feedback.loop import loop_labels_committed
from feedback.models import Job, LoopConfig, Project, SelectionRound, Task
from feedback.services import FeedbackInput, PairwiseInput, RatingInput, tasks_extend
from tests.factories import (
    MemberFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
    hard_prompt,
)


def looping_project(retrain_every: int, annotators: int = 1) -> tuple[Project, list, list[Task]]:
    """A project with its loop on and every pair a task: (project, annotators, pair tasks)."""
    project = ProjectFactory(collects_ranking=False, collects_spans=False, collects_free_text=False)
    LoopConfig.objects.create(project=project, is_on=True, retrain_every=retrain_every)
    users = [UserFactory(username=f"loop-ann{i}") for i in range(annotators)]
    for user in users:
        MemberFactory(project=project, user=user)
    for index in range(3):
        prompt = PromptFactory(project=project, **hard_prompt(index, chat=True))
        for number in range(3):
            ResponseFactory(prompt=prompt, text=f"Antwort {number} <i>İ</i>")
        tasks_extend(project=project, prompt_ids=[prompt.pk])
    return project, users, list(Task.objects.filter(project=project, layout="pair"))


def answer(task: Task, annotator, choice: str = "A") -> None:
    queue.task_submit(
        task=task, annotator=annotator, feedback=FeedbackInput(pairwise=PairwiseInput(choice, 1))
    )


def answer_and_commit(capture, task: Task, annotator) -> None:
    """Answer, then run what the answer's commit runs (the test's transaction never
    commits): the loop's check."""
    with capture() as callbacks:
        answer(task, annotator)
    assert len(callbacks) == 1
    for callback in callbacks:
        callback()


def finish(selection_round: SelectionRound, *, sent_to_people: int) -> None:
    """Mark the round done as its job would, having sent people this many tasks."""
    Job.objects.filter(pk=selection_round.job_id).update(status=Job.Status.SUCCEEDED)
    SelectionRound.objects.filter(pk=selection_round.pk).update(
        finished_at=timezone.now(), picked=sent_to_people, to_people=sent_to_people
    )


@pytest.mark.django_db
def test_a_round_starts_once_per_batch_of_answers(django_capture_on_commit_callbacks):
    project, (ann,), tasks = looping_project(retrain_every=3)
    rounds = SelectionRound.objects.filter(project=project)

    for task in tasks[:2]:
        answer_and_commit(django_capture_on_commit_callbacks, task, ann)
    assert not rounds.exists()
    answer_and_commit(django_capture_on_commit_callbacks, tasks[2], ann)
    first = rounds.get()
    assert (first.number, first.trigger, first.job.kind) == (1, "labels", "select")
    assert first.job.status == Job.Status.QUEUED

    # While it is under way, answers count toward the next round and start none.
    answer_and_commit(django_capture_on_commit_callbacks, tasks[3], ann)
    assert rounds.count() == 1

    # Round 1 sent people two tasks: two answers after it started make the next batch.
    finish(first, sent_to_people=2)
    answer_and_commit(django_capture_on_commit_callbacks, tasks[4], ann)
    second = rounds.order_by("number").last()
    assert (second.number, second.trigger) == (2, "labels")
    assert second.submission_marker > first.submission_marker


@pytest.mark.django_db
def test_other_answers_and_a_loop_turned_off_start_nothing(django_capture_on_commit_callbacks):
    project, (ann,), tasks = looping_project(retrain_every=1)
    aspect = project.aspects.create(name="Helpfulness")
    single = Task.objects.filter(project=project, layout="single").first()
    response_id = single.links.get().response_id
    with django_capture_on_commit_callbacks() as callbacks:
        queue.task_submit(
            task=single,
            annotator=ann,
            feedback=FeedbackInput(ratings=[RatingInput(response_id, aspect.pk, 4)]),
        )
    assert callbacks == []  # a rating is no pairwise label: no check at all

    LoopConfig.objects.filter(project=project).update(is_on=False)
    answer_and_commit(django_capture_on_commit_callbacks, tasks[0], ann)
    assert not SelectionRound.objects.filter(project=project).exists()
    assert loop_labels_committed(project_id=project.pk) is None
