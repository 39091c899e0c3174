"""Reward models as rows: what training and evaluation jobs store, activation, deletion,
scores, and the reads the pages and the API share.

The weights live on disk under ARTIFACT_ROOT (written by the worker); a row knows its
directory, and deleting the row removes it once the deletion is committed.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, FilteredRelation, FloatField, Prefetch, Q, QuerySet, Value
from django.db.models.functions import Length

from feedback.jobs import score_new_responses
from feedback.models import (
    Job,
    Project,
    Prompt,
    Response,
    ResponseScore,
    RewardEvaluation,
    RewardModel,
)
from feedback.selectors import projects_for_user
from feedback.services import FeedbackError

REWARD_MODEL_DIR = "reward_models"


def json_ready(value: Any) -> Any:
    """Metrics as JSON that PostgreSQL stores: numpy numbers as Python ones, NaN and
    infinities (an undefined correlation, say) as null, tuples as lists."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def reward_model_artifact_path(*, job: Job) -> str:
    """Where a training job writes its model, relative to ARTIFACT_ROOT: one directory per
    job, so that a rerun of the job overwrites its own files and no other's."""
    return f"{REWARD_MODEL_DIR}/job-{job.pk}"


@transaction.atomic
def reward_model_create(
    *,
    job: Job,
    name: str,
    backbone: str,
    backbone_kind: str,
    parameters: dict[str, Any],
    export_options: dict[str, Any],
    data_snapshot: dict[str, Any],
    metrics: dict[str, Any],
    curve: list[dict[str, Any]],
) -> RewardModel:
    """The trained model's row; a rerun of the same job updates the row it made."""
    model, _ = RewardModel.objects.update_or_create(
        job=job,
        defaults={
            "project_id": job.project_id,
            "name": name,
            "backbone": backbone,
            "backbone_kind": backbone_kind,
            "parameters": parameters,
            "export_options": export_options,
            "data_snapshot": data_snapshot,
            "metrics": json_ready(metrics),
            "curve": json_ready(curve),
            "artifact_path": reward_model_artifact_path(job=job),
        },
    )
    return model


@transaction.atomic
def reward_model_activate(*, reward_model: RewardModel) -> RewardModel:
    """Make the model the project's active one (the one before stops being), and score the
    responses it has not scored yet, if any."""
    # The project row serialises activations: two at once would both pass the unique index
    # check after each cleared the other's flag.
    Project.objects.select_for_update().filter(pk=reward_model.project_id).first()
    RewardModel.objects.filter(project=reward_model.project_id, is_active=True).exclude(
        pk=reward_model.pk
    ).update(is_active=False)
    RewardModel.objects.filter(pk=reward_model.pk).update(is_active=True)
    reward_model.is_active = True
    # A model the loop trained has scored every response already: no empty job each round.
    unscored = Response.objects.filter(prompt__project=reward_model.project_id).exclude(
        scores__reward_model=reward_model
    )
    if unscored.exists():
        score_new_responses(project=reward_model.project)
    return reward_model


def _artifact_dir(reward_model: RewardModel) -> Path | None:
    """The model's directory, if it lies under ARTIFACT_ROOT (never delete anything else)."""
    root = Path(settings.ARTIFACT_ROOT).resolve()
    path = reward_model.artifact_dir.resolve()
    return path if path.is_relative_to(root) and path != root else None


@transaction.atomic
def reward_model_delete(*, reward_model: RewardModel) -> None:
    """Delete the row and its scores; its files go once the deletion is committed
    (`remove_artifacts_after_delete`)."""
    reward_model.delete()


def remove_artifacts_after_delete(sender, instance: RewardModel, **kwargs) -> None:
    """A `post_delete` receiver rather than a step of `reward_model_delete`: a project
    deleted in the admin deletes its models by cascade, and their files must go too. The
    files go once the deletion is committed, so a rolled-back deletion keeps them."""
    path = _artifact_dir(instance)
    if path is not None:
        transaction.on_commit(lambda: shutil.rmtree(path, ignore_errors=True))


# --- Scores ----------------------------------------------------------------------------


def scores_save(
    *,
    reward_model_id: int,
    scores: Sequence[tuple[int, float]],
    head_scores: Sequence[list[float] | None] | None = None,
) -> int:
    """Store (response id, score) pairs, and each response's scores under every head when
    the model has several (`head_scores`, in the same order); a response scored before
    gets the new scores."""
    heads = head_scores if head_scores is not None else [None] * len(scores)
    rows = [
        ResponseScore(
            reward_model_id=reward_model_id,
            response_id=response_id,
            score=score,
            head_scores=per_head,
        )
        for (response_id, score), per_head in zip(scores, heads, strict=True)
    ]
    ResponseScore.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["reward_model", "response"],
        update_fields=["score", "head_scores", "created_at"],
        batch_size=2000,
    )
    return len(rows)


def responses_to_score(
    *, project: Project, reward_model_id: int, only_missing: bool
) -> QuerySet[Response]:
    """The project's responses, or those the model has not scored, in id order."""
    responses = Response.objects.filter(prompt__project=project)
    if only_missing:
        scored = ResponseScore.objects.filter(reward_model_id=reward_model_id)
        responses = responses.exclude(pk__in=scored.values("response_id"))
    return responses.order_by("id")


def unscored_count(*, project: Project, reward_model_id: int) -> int:
    return responses_to_score(
        project=project, reward_model_id=reward_model_id, only_missing=True
    ).count()


def responses_with_score(
    responses: QuerySet[Response], reward_model_id: int | None
) -> QuerySet[Response]:
    """Each response with `score`, the model's score of it (null if none or no model)."""
    if reward_model_id is None:
        return responses.annotate(score=Value(None, output_field=FloatField()))
    return responses.annotate(
        model_score=FilteredRelation(
            "scores", condition=Q(scores__reward_model_id=reward_model_id)
        ),
        score=F("model_score__score"),
    )


def project_reward_models(project: Project, reader: AbstractBaseUser) -> QuerySet[RewardModel]:
    """The project's models with their evaluations on the projects `reader` belongs to: an
    evaluation on another project tells of that project's feedback."""
    readable = RewardEvaluation.objects.filter(
        project__in=projects_for_user(reader).values("pk")
    ).select_related("project")
    return RewardModel.objects.filter(project=project).prefetch_related(
        Prefetch("evaluations", queryset=readable)
    )


def active_reward_model(project: Project) -> RewardModel | None:
    return RewardModel.objects.filter(project=project, is_active=True).first()


def project_reward_model(project: Project, reward_model_id: int) -> RewardModel:
    """One of the project's models; FeedbackError naming the parameter otherwise."""
    model = RewardModel.objects.filter(project=project, pk=reward_model_id).first()
    if model is None:
        raise FeedbackError(
            "Unknown reward model.",
            errors={"reward_model": [f"No reward model {reward_model_id} in this project."]},
        )
    return model


def scoring_model_resolve(project: Project, value: str) -> RewardModel:
    """`active` or a model id of the project, as the export's `scores` parameter takes it."""
    if value == "active":
        model = active_reward_model(project)
        if model is None:
            raise FeedbackError(
                "The project has no active reward model.",
                errors={"scores": ["Activate a model, or name one by its id."]},
            )
        return model
    if not value.isascii() or not value.isdigit():
        raise FeedbackError("Unknown reward model.", errors={"scores": ["A model id or 'active'."]})
    model = RewardModel.objects.filter(project=project, pk=int(value)).first()
    if model is None:
        raise FeedbackError(
            "Unknown reward model.",
            errors={"scores": [f"No reward model {value} in this project."]},
        )
    return model


# Scored responses drawn in the reward-against-length chart.
LENGTH_POINTS = 2000


def reward_length_points(*, reward_model: RewardModel) -> list[tuple[int, float]]:
    """(characters, score) of the first LENGTH_POINTS responses the model scored."""
    rows = (
        ResponseScore.objects.filter(reward_model=reward_model)
        .annotate(chars=Length("response__text"))
        .order_by("response_id")
        .values_list("chars", "score")
    )
    return list(rows[:LENGTH_POINTS])


@dataclass(frozen=True)
class LengthBin:
    shortest: int
    longest: int
    n: int
    mean_score: float


def reward_length_bins(points: Sequence[tuple[int, float]], bins: int = 8) -> list[LengthBin]:
    """The points in `bins` groups of about equal size by length: the chart's numbers."""
    ordered = sorted(points)
    size = -(-len(ordered) // bins) if ordered else 1
    groups = [ordered[start : start + size] for start in range(0, len(ordered), size)]
    return [
        LengthBin(group[0][0], group[-1][0], len(group), sum(s for _, s in group) / len(group))
        for group in groups
    ]


# --- Evaluations -----------------------------------------------------------------------


@transaction.atomic
def reward_evaluation_save(
    *,
    reward_model_id: int,
    project: Project,
    job: Job | None,
    export_options: dict[str, Any],
    data_snapshot: dict[str, Any],
    metrics: dict[str, Any],
) -> RewardEvaluation:
    """The model's metrics on the project's feedback; replaces the evaluation before."""
    evaluation, _ = RewardEvaluation.objects.update_or_create(
        reward_model_id=reward_model_id,
        project=project,
        defaults={
            "job": job,
            "export_options": export_options,
            "data_snapshot": data_snapshot,
            "metrics": json_ready(metrics),
        },
    )
    return evaluation


# --- Best of N -------------------------------------------------------------------------


@dataclass(frozen=True)
class RankedCandidate:
    response: Response
    score: float | None
    rank: int | None  # 1 is best; None when unscored


def prompt_candidates_ranked(
    *, prompt: Prompt, reward_model_id: int | None
) -> list[RankedCandidate]:
    """The prompt's responses, best score first, unscored last (in id order)."""
    responses = responses_with_score(Response.objects.filter(prompt=prompt), reward_model_id)
    ordered = responses.order_by(F("score").desc(nulls_last=True), "id")
    ranked = []
    for index, response in enumerate(ordered, start=1):
        rank = index if response.score is not None else None
        ranked.append(RankedCandidate(response, response.score, rank))
    return ranked
