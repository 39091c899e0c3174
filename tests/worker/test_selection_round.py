"""A selection round run in process: which pairs become tasks, in which order people get
them, what the round and its picks record, and what it does without a model.

The reward model's scores are given as rows (the round reads ResponseScore), so the
expected picks are known and no model is loaded.
"""

from __future__ import annotations

import pytest

from feedback import queue
from feedback.jobs import job_claim, job_params, job_succeed
from feedback.loop import round_start
from feedback.models import (
    LoopConfig,
    PairSelection,
    Project,
    ResponseScore,
    RewardModel,
    SelectionRound,
    Selector,
    Task,
)
from feedback.services import FeedbackInput, PairwiseInput, tasks_extend
from tests.factories import (
    MemberFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
    hard_prompt,
)
from worker.ml.selection import SELECTORS
from worker.rounds import _selector, selection_round_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def pairwise_project() -> Project:
    return ProjectFactory(
        collects_rating=False,
        collects_ranking=False,
        collects_spans=False,
        collects_free_text=False,
    )


@pytest.fixture
def annotator(pairwise_project):
    user = UserFactory(username="ann")
    MemberFactory(project=pairwise_project, user=user)
    return user


def configure(project: Project, **fields) -> LoopConfig:
    defaults = {"selector": "margin", "batch_size": 2, "random_share": 0.0, "reward_options": {}}
    return LoopConfig.objects.create(project=project, **{**defaults, **fields})


def prompt_with(project: Project, index: int, scores: list[float]) -> list[int]:
    """A prompt (chats with a system turn, HTML-looking and Unicode text) with one response
    per score; its tasks made as an import makes them. The response ids, in order."""
    prompt = PromptFactory(project=project, **hard_prompt(index, chat=True))
    ids = [
        ResponseFactory(prompt=prompt, text=f"Réponse {i} <b>{score}</b> ✓").pk
        for i, score in enumerate(scores)
    ]
    tasks_extend(project=project, prompt_ids=[prompt.pk])
    return ids


def given_model(project: Project, scores: dict[int, float | list[float]]) -> RewardModel:
    """The project's active model, its scores given per response (a list: one per head)."""
    model = RewardModel.objects.create(
        project=project,
        name="given",
        backbone="given",
        backbone_kind="embedding",
        artifact_path="reward_models/given",
        is_active=True,
    )
    ResponseScore.objects.bulk_create(
        ResponseScore(
            reward_model=model,
            response_id=response_id,
            score=score[0] if isinstance(score, list) else score,
            head_scores=score if isinstance(score, list) else None,
        )
        for response_id, score in scores.items()
    )
    return model


def run_round(project: Project) -> SelectionRound:
    """A round as the loop starts it, its job claimed and run as a worker would."""
    selection_round = round_start(project=project, trigger=SelectionRound.Trigger.MANUAL)
    job = job_claim(job_id=selection_round.job_id)
    selection_round_run(job, job_params(job))
    job_succeed(job=job)
    selection_round.refresh_from_db()
    return selection_round


def pair_of(task: Task) -> frozenset[int]:
    return frozenset(task.links.values_list("response_id", flat=True))


def served(project: Project, annotator, times: int) -> list[frozenset[int]]:
    """The pairs the queue hands the annotator, answering each before the next."""
    pairs = []
    for _ in range(times):
        assignment = queue.task_claim_next(project=project, annotator=annotator)
        if assignment is None:
            break
        pairs.append(pair_of(assignment.task))
        queue.task_submit(
            task=assignment.task,
            annotator=annotator,
            feedback=FeedbackInput(pairwise=PairwiseInput("A", 2)),
        )
    return pairs


def test_only_the_picked_pairs_become_tasks_and_people_get_them_first(pairwise_project, annotator):
    configure(pairwise_project, pairs_by_selection=True)
    p1 = prompt_with(pairwise_project, 0, [0.0, 0.1, 5.0, 9.0])
    p2 = prompt_with(pairwise_project, 1, [0.0, 3.0, 3.05])
    p3 = prompt_with(pairwise_project, 2, [0.0, 10.0])
    scores = [0.0, 0.1, 5.0, 9.0, 0.0, 3.0, 3.05, 0.0, 10.0]
    model = given_model(pairwise_project, dict(zip(p1 + p2 + p3, scores, strict=True)))
    assert not Task.objects.filter(project=pairwise_project).exists()

    selection_round = run_round(pairwise_project)

    # The two smallest reward margins, closest first; the other 8 pairs stay candidates.
    picks = list(PairSelection.objects.filter(round=selection_round).select_related("task"))
    assert [pair_of(pick.task) for pick in picks] == [
        frozenset(p2[1:3]),
        frozenset(p1[0:2]),
    ]
    assert Task.objects.filter(project=pairwise_project).count() == 2
    first = picks[0]
    assert (first.rank, first.selector, first.route) == (0, "margin", "people")
    assert first.score == pytest.approx(-0.05)
    assert first.reason == "|reward margin| 0.050"
    assert first.task.display_seed is not None
    assert first.task.priority > picks[1].task.priority > 0
    assert (
        selection_round.number,
        selection_round.selector_used,
        selection_round.fallback,
        selection_round.reward_model,
        selection_round.retrained,
    ) == (1, "margin", "", model, False)
    assert (selection_round.candidates, selection_round.picked) == (6 + 3 + 1, 2)
    assert (selection_round.created_tasks, selection_round.reprioritised) == (2, 0)
    assert (selection_round.to_people, selection_round.judge_settled) == (2, 0)
    assert selection_round.finished_at is not None and "select" in selection_round.timings

    assert served(pairwise_project, annotator, 3) == [frozenset(p2[1:3]), frozenset(p1[0:2])]


def test_picked_pairs_that_have_tasks_are_moved_up_not_made_again(pairwise_project, annotator):
    configure(pairwise_project)  # every pair is a task, as without selection
    p1 = prompt_with(pairwise_project, 0, [0.0, 0.1, 5.0])
    p2 = prompt_with(pairwise_project, 1, [0.0, 3.0, 3.05])
    given_model(pairwise_project, dict(zip(p1 + p2, [0.0, 0.1, 5.0, 0.0, 3.0, 3.05], strict=True)))
    tasks = Task.objects.filter(project=pairwise_project)
    assert tasks.count() == 6

    first = run_round(pairwise_project)

    assert tasks.count() == 6
    assert (first.created_tasks, first.reprioritised) == (0, 2)
    # Older tasks of priority 0 wait: the picks come first although made last.
    assert served(pairwise_project, annotator, 1) == [frozenset(p2[1:3])]

    second = run_round(pairwise_project)

    # The answered pair is not asked again; the unanswered pick of round 1 is picked
    # again, moved above round 1's priorities, and still one task.
    assert tasks.count() == 6
    picks = list(PairSelection.objects.filter(round=second).select_related("task"))
    assert frozenset(p2[1:3]) not in {pair_of(pick.task) for pick in picks}
    assert pair_of(picks[0].task) == frozenset(p1[0:2])
    assert picks[0].task.priority > 2 > PairSelection.objects.get(round=first, rank=1).round.number
    assert second.candidates == 5 and second.reprioritised == 2
    assert served(pairwise_project, annotator, 1) == [frozenset(p1[0:2])]


def test_without_a_model_the_round_picks_at_random_and_says_why(pairwise_project, annotator):
    configure(pairwise_project, pairs_by_selection=True, batch_size=3)
    for index in range(3):
        prompt_with(pairwise_project, index, [0, 0, 0])

    selection_round = run_round(pairwise_project)

    assert selection_round.selector == "margin"
    assert selection_round.selector_used == "random"
    assert selection_round.fallback == "No reward model yet: random pairs."
    assert selection_round.reward_model is None
    assert selection_round.picked == 3 == Task.objects.filter(project=pairwise_project).count()
    assert set(PairSelection.objects.values_list("selector", flat=True)) == {"random"}


def test_candidates_are_capped_per_prompt_and_only_the_batch_becomes_tasks(pairwise_project):
    configure(pairwise_project, pairs_by_selection=True, batch_size=5, max_pairs_per_prompt=40)
    prompt_with(pairwise_project, 0, [0.0] * 60)  # 1,770 pairs

    selection_round = run_round(pairwise_project)

    assert selection_round.candidates == 40
    assert selection_round.picked == 5 == Task.objects.filter(project=pairwise_project).count()


def test_a_model_with_heads_gives_disagreement_its_ensemble_and_one_head_gives_margin(
    pairwise_project,
):
    configure(pairwise_project, selector="disagreement", pairs_by_selection=True, batch_size=1)
    ids = prompt_with(pairwise_project, 0, [0, 0, 0])
    # The heads agree on ids[0] > ids[1] and split on ids[2] against ids[0].
    given_model(
        pairwise_project,
        {ids[0]: [1.0, 1.0, 1.0], ids[1]: [0.0, 0.0, 0.0], ids[2]: [3.0, -1.0, 1.0]},
    )

    selection_round = run_round(pairwise_project)

    assert selection_round.selector_used == "disagreement"
    pick = PairSelection.objects.get(round=selection_round)
    assert pair_of(pick.task) == frozenset([ids[0], ids[2]])
    assert pick.reason.endswith("over 3 heads")
    assert set(Selector.values) <= set(SELECTORS)  # every choice has its function
    assert _selector("thompson", heads=1, can_embed=True)[0] == "margin"
    assert _selector("margin", heads=0, can_embed=True)[0] == "dissimilar"
    assert _selector("dissimilar", heads=2, can_embed=False)[0] == "random"
