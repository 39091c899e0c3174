"""The body of a selection round (`select` jobs): retrain, score, pick, let the judge settle.

Each stage runs what the other jobs run, on the round's own job: `reward_training_run`
(so the model it trains is the job's, found again by a rerun), `scoring_run`,
`judging_run`. A rerun resumes: a model the job trained is not trained again and a round
that stored its picks does not pick again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence

import numpy as np
from django.db import DatabaseError

from feedback.jobs import JobCancelled, JudgeParams, ScoreParams, SelectParams
from feedback.loop import (
    PickInput,
    candidate_responses,
    closed_pairs,
    labels_unseen,
    pairwise_label_counts,
    prompt_label_counts,
    round_finish,
    round_of_job,
    round_picks_save,
    round_release,
    round_settle,
    round_update,
)
from feedback.models import (
    Job,
    PairSelection,
    Response,
    ResponseScore,
    RewardModel,
    SelectionRound,
    Selector,
)
from feedback.rewards import active_reward_model, reward_model_activate
from feedback.services import FeedbackError
from worker.backends import Loader
from worker.ml.rewards import Embedder
from worker.ml.selection import SELECTORS, Candidates, candidate_pairs, select_mix
from worker.runs import judging_run, reward_training_run, scoring_run

logger = logging.getLogger(__name__)

NEEDS_SCORES = {Selector.MARGIN, Selector.DISAGREEMENT, Selector.THOMPSON}
NEEDS_HEADS = {Selector.DISAGREEMENT, Selector.THOMPSON}


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - started, 3)


def selection_round_run(job: Job, params: SelectParams, *, load: Loader | None = None) -> None:
    """Run the job's round: the model, the picks, the judge's settling, the round's row.

    `load` loads the judge's model (tests pass a scripted one).
    """
    selection_round = round_of_job(job)
    try:
        _run(job, params, selection_round, load)
    except DatabaseError:
        raise  # nothing can be stored; the retry resumes the round
    except Exception as exc:
        # Cancelled or failed: the picks held for the judge go to people now, not when
        # the next round starts.
        round_release(
            selection_round=selection_round,
            note=f"The round stopped ({type(exc).__name__}); its held pairs went to people.",
        )
        raise


def _run(
    job: Job, params: SelectParams, selection_round: SelectionRound, load: Loader | None
) -> None:
    people, judges = pairwise_label_counts(selection_round.project)
    round_update(selection_round, people_labels=people, judge_labels=judges)
    timings: dict[str, float] = {}
    notes: list[str] = []
    with _timed(timings, "train and score"):
        model, retrained = _round_model(job, params, selection_round, notes)
    if not selection_round.picks.exists():
        with _timed(timings, "select"):
            _select(selection_round, params, model, notes)
    if params.judge is not None:
        with _timed(timings, "judge"):
            _settle(job, params, selection_round, load)
    held_out = (model.metrics.get("held_out") or {}) if retrained and model else {}
    round_finish(
        selection_round=selection_round,
        reward_model=model,
        retrained=retrained,
        held_out_accuracy=held_out.get("accuracy"),
        timings=timings,
        note="; ".join(filter(None, [selection_round.note, *notes])),
    )


def _round_model(
    job: Job, params: SelectParams, selection_round: SelectionRound, notes: list[str]
) -> tuple[RewardModel | None, bool]:
    """The model whose scores the round reads, and whether the round trained it: a new one
    when there are pairwise labels the active model has not seen (then made the active
    one), else the active one. Either has scored every response when this returns."""
    project = selection_round.project
    trained = RewardModel.objects.filter(job=job).first()
    active = active_reward_model(project)
    if trained is None and params.retrain is not None and labels_unseen(project, active):
        name = f"{params.retrain.name[:180]} · round {selection_round.number}"
        try:
            reward_training_run(job, params.retrain.model_copy(update={"name": name}))
        except FeedbackError as exc:
            notes.append(f"Not retrained: {exc}")
        trained = RewardModel.objects.filter(job=job).first()
    model = trained or active
    if model is not None:
        # Before activating, so that activation finds nothing to score and queues no job.
        scoring_run(job, ScoreParams(reward_model_id=model.pk))
    if trained is not None and not trained.is_active:
        reward_model_activate(reward_model=trained)
    return model, trained is not None


def _selector(asked: str, heads: int, can_embed: bool) -> tuple[str, str]:
    """The selector to run and why it is not the one asked for (blank when it is): the
    model's scores have `heads` rows (0: no model)."""
    fallback = Selector.DISSIMILAR if can_embed else Selector.RANDOM
    if asked in NEEDS_SCORES and heads == 0:
        return fallback, f"No reward model yet: {Selector(fallback).label.lower()} pairs."
    if asked in NEEDS_HEADS and heads == 1:
        return Selector.MARGIN, (
            f"{Selector(asked).label} needs a model with 2+ heads (training.heads); "
            "the active model has one: smallest margin."
        )
    if asked == Selector.DISSIMILAR and not can_embed:
        return Selector.RANDOM, "No sentence encoder: random pairs."
    return asked, ""


def _score_matrix(model: RewardModel | None, response_ids: Sequence[int]) -> np.ndarray | None:
    """(heads, n) scores of the responses by the model, NaN where it has none."""
    if model is None:
        return None
    rows = list(
        ResponseScore.objects.filter(
            reward_model=model, response_id__any=list(response_ids)
        ).values_list("response_id", "score", "head_scores")
    )
    heads = max((len(per_head or ()) for _, _, per_head in rows), default=1) or 1
    column = {response_id: i for i, response_id in enumerate(response_ids)}
    scores = np.full((heads, len(response_ids)), np.nan)
    for response_id, score, per_head in rows:
        scores[:, column[response_id]] = per_head if per_head else score
    return scores


def _embeddings(backbone: str, response_ids: Sequence[int]) -> np.ndarray:
    """(n, d) features of the responses, each with its prompt, by a frozen encoder."""
    rows = {
        pk: (messages or [{"role": "user", "content": prompt_text}], text)
        for pk, messages, prompt_text, text in Response.objects.filter(
            pk__any=list(response_ids)
        ).values_list("pk", "prompt__messages", "prompt__text", "text")
    }
    return Embedder(backbone).encode(
        [rows[pk][0] for pk in response_ids], [rows[pk][1] for pk in response_ids]
    )


def _select(
    selection_round: SelectionRound,
    params: SelectParams,
    model: RewardModel | None,
    notes: list[str],
) -> None:
    """Form the candidate pairs, run the selector and store its picks as tasks."""
    project = selection_round.project
    rng = np.random.default_rng([params.seed, selection_round.number])
    rows = candidate_pairs(
        candidate_responses(project),
        exclude=closed_pairs(project),
        max_per_prompt=params.max_pairs_per_prompt,
        rng=rng,
    )
    response_ids = sorted({r for _, a, b in rows for r in (a, b)})
    scores = _score_matrix(model, response_ids)
    used, fallback = _selector(
        params.selector, 0 if scores is None else len(scores), bool(params.embedding_backbone)
    )
    column = {response_id: i for i, response_id in enumerate(response_ids)}
    if used in NEEDS_SCORES and scores is not None:
        # A response added since the model scored waits for the next round.
        scored = ~np.isnan(scores[0])
        rows = [row for row in rows if scored[column[row[1]]] and scored[column[row[2]]]]
    candidates = Candidates(
        pairs=np.array([(column[a], column[b]) for _, a, b in rows], dtype=np.int64),
        prompts=np.array([prompt for prompt, _, _ in rows], dtype=np.int64),
        scores=None if scores is None else np.nan_to_num(scores),
        embeddings=(
            _embeddings(params.embedding_backbone, response_ids)
            if used == Selector.DISSIMILAR and rows
            else None
        ),
        prompt_labels=prompt_label_counts(project) if used == Selector.PROMPT else {},
    )
    selector = SELECTORS[used]
    if used == Selector.RANDOM or params.random_share == 0:
        picks = selector(candidates, params.batch_size, rng)
    else:
        picks = select_mix(
            candidates, params.batch_size, rng, selector=selector, random_share=params.random_share
        )
    if not rows:
        notes.append("No candidate pairs left: every pair has a task that was answered.")
    round_update(selection_round, selector_used=used, fallback=fallback, candidates=len(rows))
    round_picks_save(
        selection_round=selection_round,
        picks=[
            PickInput(
                responses=(rows[p.index][1], rows[p.index][2]),
                selector=p.selector,
                score=p.score,
                reason=p.reason,
            )
            for p in picks
        ],
        hold=params.judge is not None,
    )


def _settle(
    job: Job, params: SelectParams, selection_round: SelectionRound, load: Loader | None
) -> None:
    """Ask the judge about the held picks in both orders, then route them; a judge that
    fails sends its pairs to people rather than keep them from everyone."""
    settling = params.judge
    held = list(
        selection_round.picks.filter(route=PairSelection.Route.JUDGE_PENDING).values_list(
            "task_id", flat=True
        )
    )
    if not held:
        return
    try:
        judging_run(
            job,
            JudgeParams(judge_id=settling.judge_id, kinds=["pairwise"], task_ids=held),
            load=load,
        )
    except (JobCancelled, DatabaseError):
        raise
    except Exception as exc:
        logger.exception("round %s: the judge failed", selection_round.pk)
        round_release(
            selection_round=selection_round,
            note=f"The judge failed ({type(exc).__name__}: {exc}); its pairs went to people.",
        )
        return
    round_settle(
        selection_round=selection_round,
        min_strength=settling.min_strength,
        control_share=settling.control_share,
    )
