"""People and judges together: a round's picks that the judge answers alike in both orders
and surely are settled by it (a control share goes to people too); the others, and all of
them when the judge fails, go to people."""

from __future__ import annotations

import json

import pytest

from feedback import queue
from feedback.jobs import JobCancelled, job_cancel, job_claim, job_params, job_succeed
from feedback.loop import control_agreement, round_start
from feedback.models import (
    LoopConfig,
    PairSelection,
    PairwiseFeedback,
    Project,
    SelectionRound,
    Task,
)
from feedback.services import FeedbackInput, PairwiseInput, tasks_extend
from tests.factories import (
    JudgeFactory,
    MemberFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
    hard_prompt,
)
from worker.rounds import selection_round_run

pytestmark = pytest.mark.django_db

Route = PairSelection.Route


def shown(prompt: str) -> tuple[str, str]:
    first = prompt.split("[Response A]\n")[1].split("\n\n[Response B]")[0]
    return first, prompt.split("[Response B]\n")[1]


def judge_script(prompt: str) -> str:
    """Sure of `sure` pairs (the `+` response, much better, in either order), only slightly
    sure of `weak` ones, and always for the response shown first in `biased` ones."""
    first, _ = shown(prompt)
    if "biased" in first:
        return '{"verdict": "A", "strength": 3}'
    verdict = "A" if "+" in first else "B"
    strength = 1 if "weak" in first else 3
    return json.dumps({"verdict": verdict, "strength": strength, "explanation": "Plus wins."})


@pytest.fixture
def setup(db) -> tuple[Project, object, dict[str, list[Task]]]:
    project = ProjectFactory(
        collects_rating=False, collects_ranking=False, collects_spans=False,
        collects_free_text=False,
    )  # fmt: skip
    judge = JudgeFactory()
    LoopConfig.objects.create(
        project=project,
        pairs_by_selection=True,
        selector="margin",
        batch_size=10,
        random_share=0,
        reward_options={},
        judge=judge,
        judge_min_strength=2,
        control_share=0.5,
    )
    kinds = ["sure"] * 4 + ["biased", "weak"]
    for index, kind in enumerate(kinds):
        prompt = PromptFactory(project=project, **hard_prompt(index, chat=True))
        ResponseFactory(prompt=prompt, text=f"{kind} + <b>réponse</b> {index}")
        ResponseFactory(prompt=prompt, text=f"{kind} - <i>réponse</i> {index}")
        tasks_extend(project=project, prompt_ids=[prompt.pk])
    return project, judge


def run_round(project: Project, load) -> SelectionRound:
    selection_round = round_start(project=project, trigger=SelectionRound.Trigger.MANUAL)
    job = job_claim(job_id=selection_round.job_id)
    selection_round_run(job, job_params(job), load=load)
    job_succeed(job=job)
    selection_round.refresh_from_db()
    return selection_round


def kind_of(task: Task) -> str:
    return task.links.first().response.text.split()[0]


def test_sure_consistent_verdicts_settle_pairs_and_the_rest_go_to_people(setup, scripted):
    project, judge = setup
    selection_round = run_round(project, scripted(judge_script))

    picks = PairSelection.objects.filter(round=selection_round).select_related("task")
    routes = {pick.task_id: pick.route for pick in picks}
    by_kind = {
        kind: [p for p in picks if kind_of(p.task) == kind] for kind in ("sure", "biased", "weak")
    }
    assert sorted(p.route for p in by_kind["sure"]) == [Route.CONTROL] * 2 + [Route.JUDGE] * 2
    assert [p.route for p in by_kind["biased"]] == [Route.PEOPLE]  # inconsistent: a tie
    assert [p.route for p in by_kind["weak"]] == [Route.PEOPLE]  # consistent, not sure enough
    assert (selection_round.picked, selection_round.judge_settled) == (6, 2)
    assert (selection_round.control, selection_round.to_people) == (2, 2)
    assert selection_round.judge == judge and "judge" in selection_round.timings

    # The judge's verdict is stored as its feedback: the `+` response, much better.
    for pick in by_kind["sure"]:
        verdict = PairwiseFeedback.objects.get(
            submission__task=pick.task, submission__judge=judge, submission__is_current=True
        )
        plus = next(link.position for link in pick.task.links.all() if "+" in link.response.text)
        assert (verdict.choice, verdict.strength) == ("AB"[plus], 3)

    # People get the control and uncertain pairs, never those the judge settled.
    annotator = UserFactory(username="ann")
    MemberFactory(project=project, user=annotator)
    answered = []
    while assignment := queue.task_claim_next(project=project, annotator=annotator):
        task = assignment.task
        judged = PairwiseFeedback.objects.filter(
            submission__task=task, submission__judge=judge
        ).first()
        # Agree with the judge on the first control pair, disagree on the second.
        agree = routes[task.pk] == Route.CONTROL and not any(
            routes[t] == Route.CONTROL for t in answered
        )
        choice = judged.choice if agree else ("B" if judged and judged.choice == "A" else "A")
        queue.task_submit(
            task=task,
            annotator=annotator,
            feedback=FeedbackInput(pairwise=PairwiseInput(choice, 1)),
        )
        answered.append(task.pk)
    assert sorted(routes[t] for t in answered) == [Route.CONTROL] * 2 + [Route.PEOPLE] * 2

    control = control_agreement([selection_round])[selection_round.pk]
    assert (control.tasks, control.answered, control.answers, control.agreeing) == (2, 2, 2, 1)
    assert control.agreement == 0.5


def test_a_judge_that_fails_sends_its_pairs_to_people(setup, scripted):
    project, _ = setup

    def broken(prompt: str) -> str:
        raise ConnectionError("judge server down")

    selection_round = run_round(project, scripted(broken))

    assert set(PairSelection.objects.values_list("route", flat=True)) == {Route.PEOPLE}
    assert (selection_round.to_people, selection_round.judge_settled) == (6, 0)
    assert "The judge failed (ConnectionError: judge server down)" in selection_round.note


def test_a_round_cancelled_while_its_judge_works_sends_the_held_pairs_to_people(setup, scripted):
    project, _ = setup
    selection_round = round_start(project=project, trigger=SelectionRound.Trigger.MANUAL)
    job = job_claim(job_id=selection_round.job_id)

    def cancelled(prompt: str) -> str:
        job_cancel(job=job)  # an admin's click while the judge answers
        return judge_script(prompt)

    with pytest.raises(JobCancelled):
        selection_round_run(job, job_params(job), load=scripted(cancelled))
    selection_round.refresh_from_db()
    assert set(PairSelection.objects.values_list("route", flat=True)) == {Route.PEOPLE}
    assert "The round stopped (JobCancelled)" in selection_round.note
