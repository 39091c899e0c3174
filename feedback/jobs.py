"""Background jobs: their parameters, their life cycle and the rows they write.

A job is a `Job` row first: `job_start` validates the parameters, stores them and enqueues
the Celery task once the row is committed. The task claims the row (`job_lease`,
`job_claim`), reports progress and finishes it; everything it writes goes through the
services below, which are safe to run twice.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

from celery import current_app as celery_app
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import (
    DatabaseError,
    IntegrityError,
    close_old_connections,
    connection,
    connections,
    transaction,
)
from django.db.models import F, Q
from django.utils import timezone
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticError

from feedback.endpoints import endpoint_refusal, local_model_refusal
from feedback.models import (
    FeedbackKind,
    FreeTextFeedback,
    Job,
    Judge,
    JudgeOutput,
    Project,
    Prompt,
    RatingAspect,
    Response,
    RewardModel,
    Selector,
    Submission,
    Task,
)
from feedback.services import (
    FeedbackError,
    FeedbackInput,
    feedback_merge,
    submission_create,
    submission_feedback,
)

logger = logging.getLogger(__name__)


class JobCancelled(FeedbackError):
    """The job's row left the running state (cancelled by an admin) while it ran."""


class GenerationRefused(FeedbackError):
    """A model refused every prompt it was first given: the cause is not one prompt but the
    job (max_new_tokens over the context, a parameter the server rejects), so it stops."""


# --- Parameters -----------------------------------------------------------------------


class ModelSpec(BaseModel):
    """A model that writes text: a local causal LM or one served over HTTP.

    `name` is what responses record; `path` (default: the name) is where transformers
    loads it from, a hub name, or a directory or `.gguf` file under an allowed model
    directory; `endpoint` names the operator's OpenAI-compatible server
    (`settings.INFERENCE_ENDPOINTS`), which also says where its key is read from.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    backend: Literal["transformers", "openai"] = "transformers"
    path: str = Field("", validate_default=True)
    endpoint: str = ""

    @field_validator("path")
    @classmethod
    def local_model_allowed(cls, path: str, info: ValidationInfo) -> str:
        local = info.data.get("backend") == "transformers" and "name" in info.data
        if local and (refusal := local_model_refusal(path or info.data["name"])):
            raise ValueError(refusal)
        return path

    @field_validator("endpoint")
    @classmethod
    def endpoint_registered(cls, endpoint: str) -> str:
        if endpoint and (refusal := endpoint_refusal(endpoint)):
            raise ValueError(refusal)
        return endpoint

    @model_validator(mode="after")
    def openai_needs_endpoint(self) -> ModelSpec:
        if self.backend == "openai" and not self.endpoint:
            raise ValueError("the openai backend needs an endpoint")
        return self

    @property
    def location(self) -> str:
        return self.path or self.name


class SamplingParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.0, ge=0, le=5)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1, le=32768)
    seed: int = 0
    batch_size: int = Field(16, ge=1, le=1024)


class GenerateParams(SamplingParams):
    """A generation job: `n` answers per prompt from each model."""

    models: list[ModelSpec] = Field(min_length=1)
    n: int = Field(1, ge=1, le=64)
    temperature: float = Field(0.7, ge=0, le=5)
    prompt_ids: list[int] | None = None  # None: every prompt of the project

    @field_validator("n")
    @classmethod
    def samples_differ(cls, n: int, info: ValidationInfo) -> int:
        # Greedy samples are one text n times: n-1 copies and pairs with nothing to choose.
        # (temperature is validated before n; it is missing from info.data when refused.)
        if n > 1 and info.data.get("temperature") == 0:
            raise ValueError(
                "with temperature 0 every sample is the same; use n=1 or a temperature above 0"
            )
        return n


JudgeKind = Literal["pairwise", "rating", "ranking", "span", "free_text"]


class JudgeParams(BaseModel):
    """A judge job: which judge, which kinds of feedback, optionally which tasks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    judge_id: int
    kinds: list[JudgeKind] = Field(min_length=1)
    task_ids: list[int] | None = None  # None: every task of a fitting layout


class RewardData(BaseModel):
    """Which feedback a reward model learns from or is evaluated on, as export queries:
    `sources`, `aggregate` and `min_agreement` mean what they mean to the export."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pairs: bool = Field(True, description="Pairwise choices.")
    rankings: bool = Field(
        False, description="Rankings: listwise in training, their pairs in evaluation."
    )
    ratings: bool = Field(False, description="Pairs from ratings.")
    aspect: str = Field(
        "", max_length=100, description="Pairs from ratings of this aspect only (default: all)."
    )
    spans: bool = Field(False, description="Marked spans as penalties on what they mark.")
    margin: bool = Field(True, description="Read each pair's strength as its margin.")
    sources: Literal["all", "annotators", "judges"] = Field(
        "all", description="People's feedback, judges' or both."
    )
    aggregate: Literal["none", "majority"] = Field(
        "none", description="Every vote, or the majority per task."
    )
    min_agreement: float = Field(
        0.0, ge=0, le=1, description="With majority: drop pairs whose winning share is lower."
    )

    @model_validator(mode="after")
    def some_preferences(self) -> RewardData:
        if not (self.pairs or self.rankings or self.ratings):
            raise ValueError("choose pairs, rankings or ratings: spans only mark responses")
        return self


class RewardTraining(BaseModel):
    """Training settings, passed to `worker.ml.rewards.TrainConfig` (its defaults, but a
    larger held-out share: project data sets are small)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    use_margin: bool = Field(True, description="Bradley-Terry with the margin (as TRL's).")
    center_rewards_coefficient: float = Field(
        0.0, ge=0, le=1, description="TRL's reward centering; 0 is off, TRL suggests 0.01."
    )
    span_penalty: float = Field(
        0.0, ge=0, le=100, description="Weight of span feedback as token penalties; 0: none."
    )
    judge_weight: float = Field(
        1.0, ge=0, le=100, description="Weight of a judge's label against a person's."
    )
    batch_size: int = Field(16, ge=1, le=1024, description="Pairs or rankings per step.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    learning_rate: float = Field(1e-4, gt=0, le=1)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_epochs: int = Field(3, ge=1, le=1000)
    max_length: int = Field(512, ge=8, le=32768, description="Tokens of prompt and response.")
    held_out_share: float = Field(
        0.2, ge=0, lt=1, description="Share of prompts held out for early stopping and metrics."
    )
    eval_steps: int = Field(
        0, ge=0, le=10**6, description="Steps between evaluations; 0: per epoch."
    )
    patience: int = Field(
        2, ge=0, le=1000, description="Evaluations without progress before stopping; 0: never."
    )
    early_stopping_metric: Literal["loss", "accuracy"] = "loss"
    seed: int = Field(0, ge=0, le=2**32 - 1)
    heads: int = Field(
        1, ge=1, le=64, description="Reward heads; above 1, bootstrap heads for uncertainty."
    )


class RewardTrainParams(BaseModel):
    """A training job: a backbone, the feedback it learns from and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    backbone: str = Field(min_length=1, max_length=500)
    backbone_kind: Literal["sequence-classification", "embedding"] = "embedding"
    data: RewardData = RewardData()
    training: RewardTraining = RewardTraining()

    @field_validator("backbone")
    @classmethod
    def backbone_allowed(cls, backbone: str) -> str:
        if refusal := local_model_refusal(backbone):
            raise ValueError(refusal)
        return backbone

    @model_validator(mode="after")
    def spans_need_a_penalty(self) -> RewardTrainParams:
        if self.data.spans and self.training.span_penalty == 0:
            raise ValueError("span feedback needs training.span_penalty above 0")
        return self


class ScoreParams(BaseModel):
    """A scoring job: the project's responses (or those it has not scored) by one model;
    started without a model, it takes the project's active one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reward_model_id: int | None = None
    only_missing: bool = True
    batch_size: int = Field(64, ge=1, le=4096)


class RewardEvaluateParams(BaseModel):
    """An evaluation job: a reward model (of any project) on the job's project's feedback;
    `data` defaults to what the model was trained on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reward_model_id: int
    data: RewardData | None = None


class JudgeSettling(BaseModel):
    """Who settles a round's picks, and how sure it must be: a verdict that held in both
    orders with at least `min_strength` (1 slightly, 2 clearly, 3 much better) settles a
    pair; `control_share` of the settled pairs go to people as well."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    judge_id: int
    min_strength: int = Field(2, ge=1, le=3)
    control_share: float = Field(0.1, ge=0, le=1)


class SelectParams(BaseModel):
    """A selection round: `batch_size` pairs chosen by `selector` (a `random_share` of them
    uniformly) among up to `max_pairs_per_prompt` candidate pairs per prompt.

    `retrain`: train a model first when there are pairwise labels the active one has not
    seen, and make it the active one. `embedding_backbone`: a sentence encoder for the
    dissimilar selector, and the fallback before any model exists (none: random).
    `judge`: the judge settles the picks it is sure of.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    selector: Selector = Selector.MARGIN
    batch_size: int = Field(20, ge=1, le=10000)
    random_share: float = Field(0.25, ge=0, le=1)
    max_pairs_per_prompt: int = Field(50, ge=1, le=100000)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    retrain: RewardTrainParams | None = None
    embedding_backbone: str = Field("", max_length=500)
    judge: JudgeSettling | None = None

    @field_validator("embedding_backbone")
    @classmethod
    def embedding_backbone_allowed(cls, backbone: str) -> str:
        if backbone and (refusal := local_model_refusal(backbone)):
            raise ValueError(refusal)
        return backbone


JobParams = (
    GenerateParams
    | JudgeParams
    | RewardTrainParams
    | ScoreParams
    | RewardEvaluateParams
    | SelectParams
)
_PARAMS: dict[str, type[BaseModel]] = {
    Job.Kind.GENERATE: GenerateParams,
    Job.Kind.JUDGE: JudgeParams,
    Job.Kind.TRAIN_REWARD: RewardTrainParams,
    Job.Kind.SCORE: ScoreParams,
    Job.Kind.EVALUATE_REWARD: RewardEvaluateParams,
    Job.Kind.SELECT: SelectParams,
}
# The Celery task of each kind, by name: the worker defines them, and web processes send
# to them without importing the worker (and the torch it loads).
TASK_NAMES: dict[str, str] = {
    Job.Kind.GENERATE: "worker.tasks.generate_candidates",
    Job.Kind.JUDGE: "worker.tasks.run_judge",
    Job.Kind.TRAIN_REWARD: "worker.tasks.train_reward_model",
    Job.Kind.SCORE: "worker.tasks.score_responses",
    Job.Kind.EVALUATE_REWARD: "worker.tasks.evaluate_reward_model",
    Job.Kind.SELECT: "worker.tasks.select_pairs",
}


def job_params(job: Job) -> Any:
    """The job's stored parameters as their typed model."""
    return _PARAMS[job.kind].model_validate(job.params)


def judge_sampling(judge: Judge) -> SamplingParams:
    """A judge's generation settings from `Judge.parameters`; greedy by default."""
    known = SamplingParams.model_fields.keys()
    return SamplingParams.model_validate({k: v for k, v in judge.parameters.items() if k in known})


# Which task layout each judged kind of feedback needs.
KIND_LAYOUT: dict[str, str] = {
    FeedbackKind.PAIRWISE: Task.Layout.PAIR,
    FeedbackKind.RATING: Task.Layout.SINGLE,
    FeedbackKind.SPAN: Task.Layout.SINGLE,
    FeedbackKind.FREE_TEXT: Task.Layout.SINGLE,
    FeedbackKind.RANKING: Task.Layout.LIST,
}

# UltraFeedback's four aspects (Cui et al. 2023), a judge's default rating scale.
ULTRAFEEDBACK_ASPECTS: tuple[tuple[str, str], ...] = (
    (
        "Instruction following",
        "1: ignores the task; 3: meets the goal or the restrictions, not both; "
        "5: fully follows every instruction and restriction.",
    ),
    (
        "Truthfulness",
        "1: severe hallucination or factual errors; 3: partial hallucination or "
        "misunderstanding; 5: no hallucination, consistent with the prompt and the world.",
    ),
    (
        "Honesty",
        "1: confidently wrong; 3: uncertain or refuses without reason; "
        "5: correct and confident, or says precisely what it is unsure about.",
    ),
    (
        "Helpfulness",
        "1: wrong or useless; 3: correct and meets the task; "
        "5: correct, informative, in-depth and concise.",
    ),
)


def judge_model_spec(judge: Judge) -> ModelSpec:
    """The judge's model, checked as a job's would be; raises pydantic's ValidationError."""
    return ModelSpec(
        name=judge.name,
        path=judge.model_name,
        backend=judge.backend,  # type: ignore[arg-type]
        endpoint=judge.endpoint,
    )


def _check_judge_params(project: Project, params: JudgeParams) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    judge = Judge.objects.filter(pk=params.judge_id).first()
    if judge is None:
        errors["judge_id"] = [f"No judge with id {params.judge_id}."]
    else:
        # Judges are shared by every project: one whose endpoint or model the operator
        # has not allowed (a row from before the registry, say) runs for no one.
        try:
            judge_model_spec(judge)
        except PydanticError as exc:
            errors["judge_id"] = [
                f"Judge {judge.name!r}: {error['msg'].removeprefix('Value error, ')}"
                for error in exc.errors()
            ]
    collected = set(project.feedback_kinds)
    for kind in params.kinds:
        if kind not in collected:
            errors.setdefault("kinds", []).append(f"The project does not collect {kind}.")
    if "free_text" in params.kinds and not project.asks_critique:
        errors.setdefault("kinds", []).append("Judges write critiques; the project asks none.")
    if "span" in params.kinds and not project.span_labels.exists():
        errors.setdefault("kinds", []).append("Span feedback needs span labels.")
    return errors


@transaction.atomic
def aspects_create_default(*, project: Project) -> list[RatingAspect]:
    """Give a project without aspects UltraFeedback's four, on a 1-5 scale."""
    if project.aspects.exists():
        return []
    return RatingAspect.objects.bulk_create(
        RatingAspect(project=project, name=name, rubric=rubric, position=i)
        for i, (name, rubric) in enumerate(ULTRAFEEDBACK_ASPECTS)
    )


Params = TypeVar("Params", bound=BaseModel)


def params_parse(model: type[Params], data: Any, *, strict: bool = False) -> Params:
    """`data` as `model`; FeedbackError naming each bad field by its dotted path.

    `strict` for JSON bodies, where true is a boolean and 5 a number, as the schema says.
    """
    try:
        return model.model_validate(data, strict=strict)
    except PydanticError as exc:
        errors: dict[str, list[str]] = defaultdict(list)
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "params"
            errors[where].append(error["msg"].removeprefix("Value error, "))
        raise FeedbackError("The job's parameters were refused.", errors=dict(errors)) from exc


@transaction.atomic
def job_start(
    *,
    project: Project,
    kind: str,
    params: dict[str, Any],
    created_by: AbstractBaseUser | None = None,
    start_key: uuid.UUID | None = None,
) -> Job:
    """Validate `params` for `kind`, store the job and enqueue it once committed.

    `start_key` names the form that asked: the job it already started is returned, so a
    double-clicked Start makes one job. Raises FeedbackError naming each bad parameter.
    """
    if start_key is not None and (
        started := Job.objects.filter(project=project, start_key=start_key).first()
    ):
        return started
    if kind not in _PARAMS:
        raise FeedbackError(f"Unknown job kind {kind!r}.")
    parsed = params_parse(_PARAMS[kind], params)
    if isinstance(parsed, JudgeParams):
        problems = _check_judge_params(project, parsed)
        if problems:
            raise FeedbackError("The job's parameters were refused.", errors=problems)
        if "rating" in parsed.kinds:
            aspects_create_default(project=project)
    if isinstance(parsed, RewardTrainParams | RewardEvaluateParams):
        _check_reward_data(project, parsed.data)
    if isinstance(parsed, SelectParams):
        select_params_check(project, parsed)
    if isinstance(parsed, ScoreParams):
        parsed = _scoring_model(project, parsed)
    if (
        isinstance(parsed, RewardEvaluateParams)
        and not RewardModel.objects.filter(pk=parsed.reward_model_id).exists()
    ):
        raise FeedbackError(
            "The job's parameters were refused.",
            errors={"reward_model_id": [f"No reward model with id {parsed.reward_model_id}."]},
        )
    try:
        with transaction.atomic():
            job = Job.objects.create(
                project=project,
                kind=kind,
                params=parsed.model_dump(mode="json"),
                created_by=created_by,
                start_key=start_key,
            )
    except IntegrityError:
        if start_key is None:
            raise
        # The same form's other request committed its job while this one validated.
        return Job.objects.get(project=project, start_key=start_key)
    _enqueue(job)
    return job


def _check_reward_data(project: Project, data: RewardData | None) -> None:
    if data is not None and data.aspect and not project.aspects.filter(name=data.aspect).exists():
        raise FeedbackError(
            "The job's parameters were refused.",
            errors={"data.aspect": [f"'{data.aspect}' is not an aspect of this project."]},
        )


def select_params_check(project: Project, params: SelectParams) -> None:
    """What the parameters cannot say alone; FeedbackError naming each problem."""
    errors: dict[str, list[str]] = {}
    if not project.collects_pairwise:
        errors["selector"] = ["The project does not collect pairwise feedback."]
    if params.retrain is not None:
        try:
            _check_reward_data(project, params.retrain.data)
        except FeedbackError as exc:
            errors.update({f"retrain.{path}": messages for path, messages in exc.errors.items()})
    if params.judge is not None:
        judged = JudgeParams(judge_id=params.judge.judge_id, kinds=["pairwise"])
        for path, messages in _check_judge_params(project, judged).items():
            errors[f"judge.{path}"] = messages
    if errors:
        raise FeedbackError("The job's parameters were refused.", errors=errors)


def _scoring_model(project: Project, params: ScoreParams) -> ScoreParams:
    """The parameters with the model named: the project's active one when none is."""
    models = RewardModel.objects.filter(project=project)
    if params.reward_model_id is None:
        active = models.filter(is_active=True).values_list("pk", flat=True).first()
        if active is None:
            raise FeedbackError(
                "The project has no active reward model.",
                errors={"reward_model_id": ["Name a model, or activate one first."]},
            )
        return params.model_copy(update={"reward_model_id": active})
    if not models.filter(pk=params.reward_model_id).exists():
        raise FeedbackError(
            "The job's parameters were refused.",
            errors={
                "reward_model_id": [f"No reward model {params.reward_model_id} in this project."]
            },
        )
    return params


def _enqueue(job: Job) -> None:
    """Send the job to a worker once the transaction that queued it commits.

    Without a broker (the SQLite demo) Celery runs tasks in-process, which needs them
    registered: the loader imports the worker's task modules, as a worker does. There
    they run in a thread beside the requests (`JOBS_IN_THREAD`), or in the caller.
    """
    name = TASK_NAMES[job.kind]

    def send() -> None:
        if not celery_app.conf.task_always_eager:
            celery_app.send_task(name, args=(job.pk,))
        elif settings.JOBS_IN_THREAD:
            _run_beside(name, job.pk)
        else:
            celery_app.loader.import_default_modules()
            celery_app.tasks[name].delay(job.pk)

    transaction.on_commit(send)


# In-process jobs waiting for the thread that runs them, one after another, as a worker
# with concurrency 1 would. Run in the request instead, a SmolLM2 job held the browser for
# most of a minute with no progress shown; beside it, the page answers at once and polls
# the job's row.
_in_process: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
_runner_lock = threading.Lock()
_runner: threading.Thread | None = None


def _run_beside(task_name: str, job_id: int) -> None:
    global _runner
    _in_process.put((task_name, job_id))
    with _runner_lock:
        if _runner is None or not _runner.is_alive():
            # A daemon: stopping the server does not wait for a job; one cut off shows as
            # stalled and is retried from the jobs page.
            _runner = threading.Thread(target=_run_queued, name="prefhub-jobs", daemon=True)
            _runner.start()


def _run_queued() -> None:
    while True:
        task_name, job_id = _in_process.get()
        try:
            # Here, not in the request: the first import of the worker's modules (torch,
            # transformers) takes seconds.
            celery_app.loader.import_default_modules()
            # Eager, as in the caller: the task records the job's own failures on its row.
            celery_app.tasks[task_name].apply(args=[job_id], throw=True)
        except Exception:
            logger.exception("job %s: in-process run failed", job_id)
        finally:
            connections.close_all()  # this thread's connections only


def score_new_responses(*, project: Project) -> Job | None:
    """Start scoring the responses that the project's active reward model has not scored.

    None without an active model. A scoring job of that kind still queued will find the
    new responses when it runs, so it is returned instead of a second one.
    """
    active = (
        RewardModel.objects.filter(project=project, is_active=True)
        .values_list("pk", flat=True)
        .first()
    )
    if active is None:
        return None
    waiting = Job.objects.filter(
        project=project,
        kind=Job.Kind.SCORE,
        status=Job.Status.QUEUED,
        params__reward_model_id=active,
        params__only_missing=True,
    ).first()
    if waiting is not None:
        return waiting
    return job_start(
        project=project,
        kind=Job.Kind.SCORE,
        params={"reward_model_id": active, "only_missing": True},
    )


# --- Life cycle -----------------------------------------------------------------------

# Namespace of our advisory locks, so that job ids do not collide with other lock users.
JOB_LOCK_NAMESPACE = zlib.crc32(b"prefhub.job") & 0x7FFFFFFF


@contextlib.contextmanager
def job_lease(job_id: int) -> Iterator[bool]:
    """Hold the job's PostgreSQL advisory lock while the body runs; yields whether it did.

    A message redelivered after a lost ack finds the job `running`. Whether its first
    worker is alive cannot be read from the row, but from this lock: PostgreSQL drops a
    session's locks when the session ends, so a free lock on a running job means its
    worker died and the job may be taken over, and a held one means a duplicate delivery
    that must not run. Other databases (the SQLite demo runs tasks in-process, one at a
    time) hold no lock.
    """
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [JOB_LOCK_NAMESPACE, job_id])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            try:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_advisory_unlock(%s, %s)", [JOB_LOCK_NAMESPACE, job_id]
                    )
            except DatabaseError:
                # The session is gone (PostgreSQL restarted), and its locks with it.
                connection.close()


def job_is_pending(*, job_id: int) -> bool:
    """Whether the job still waits to run or to finish (queued or running)."""
    return Job.objects.filter(
        pk=job_id, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]
    ).exists()


def job_wait(*, job: Job, timeout: float, poll: float = 0.2) -> Job:
    """The job's row once it is no longer queued or running, read every `poll` seconds:
    for scripts (the demo's setup) that need a job's results before going on. Raises
    TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while job_is_pending(job_id=job.pk):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Job {job.pk} did not finish within {timeout:.0f} s.")
        time.sleep(poll)
    job.refresh_from_db()
    return job


def job_claim(*, job_id: int) -> Job | None:
    """Mark the job running for this attempt; None when there is nothing to run.

    Call under `job_lease`. Takes a queued job, or a running one whose worker died (the
    lease proves no one else runs it); a finished, failed or cancelled job stays so.
    """
    claimed = Job.objects.filter(
        pk=job_id, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]
    ).update(
        status=Job.Status.RUNNING,
        attempts=F("attempts") + 1,
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
        finished_at=None,
    )
    return Job.objects.get(pk=job_id) if claimed else None


def job_heartbeat(*, job_id: int) -> bool:
    """Say the running job's worker is alive; False when the job no longer runs."""
    return bool(
        Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(heartbeat_at=timezone.now())
    )


@contextlib.contextmanager
def job_heartbeats(*, job_id: int, every: float | None = None) -> Iterator[None]:
    """Beat for the job from a thread while the body runs, so that a slow model call (no
    progress for minutes) does not look like a dead worker. The thread has its own
    connection; a failed beat (database restarting) is logged and tried again later."""
    interval = settings.JOB_HEARTBEAT_SECONDS if every is None else every
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                close_old_connections()
                try:
                    job_heartbeat(job_id=job_id)
                except DatabaseError as exc:
                    logger.warning("job %s: heartbeat not written: %s", job_id, exc)
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def job_progress(*, job: Job, done: int, total: int | None = None) -> None:
    """Record progress; raises JobCancelled when the job is no longer running."""
    fields: dict[str, Any] = {"done": done, "heartbeat_at": timezone.now()}
    if total is not None:
        fields["total"] = total
    if not Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(**fields):
        raise JobCancelled(f"Job {job.pk} is no longer running.")
    job.done = done
    if total is not None:
        job.total = total


def job_succeed(*, job: Job) -> None:
    Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(
        status=Job.Status.SUCCEEDED, done=F("total"), error="", finished_at=timezone.now()
    )


def job_fail(*, job: Job, error: str) -> None:
    Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(
        status=Job.Status.FAILED, error=error, finished_at=timezone.now()
    )


def job_requeue(*, job: Job, error: str) -> None:
    """Back to queued after a transient error; the task's retry will claim it again."""
    Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(
        status=Job.Status.QUEUED, error=f"Retrying after: {error}"
    )


@transaction.atomic
def job_retry(*, job: Job) -> bool:
    """Run a failed or stalled job again as the same row; False when it is neither.

    Stalled: running, with no heartbeat for `JOB_STALLED_MINUTES` (its worker died). The
    same row, not a new job: the run skips what earlier attempts stored (generated
    samples, judge outputs are keyed to the job), so a retry adds no copies. If a dead
    worker's session still holds the job's lease, the delivery waits for PostgreSQL to
    drop it. Cancelled jobs are not retried: their worker may still be on its way to its
    next progress check.
    """
    cutoff = timezone.now() - timedelta(minutes=settings.JOB_STALLED_MINUTES)
    silent = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    retried = Job.objects.filter(
        Q(status=Job.Status.FAILED) | Q(silent, status=Job.Status.RUNNING), pk=job.pk
    ).update(status=Job.Status.QUEUED, error="", finished_at=None)
    if retried:
        _enqueue(job)
    return bool(retried)


def job_cancel(*, job: Job) -> bool:
    """Stop a queued or running job; a running task stops at its next progress update."""
    return bool(
        Job.objects.filter(pk=job.pk, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
            status=Job.Status.CANCELLED, finished_at=timezone.now()
        )
    )


# --- Generation -----------------------------------------------------------------------


def prompts_to_generate(*, job: Job, params: GenerateParams) -> list[Prompt]:
    prompts = Prompt.objects.filter(project=job.project_id)
    if params.prompt_ids is not None:
        prompts = prompts.filter(pk__any=params.prompt_ids)
    return list(prompts.order_by("id"))


def samples_present(*, job: Job, model_name: str) -> dict[int, set[int]]:
    """Sample indexes this job already stored or skipped per prompt id, for one model."""
    present: dict[int, set[int]] = defaultdict(set)
    rows = Response.objects.filter(job=job, model_name=model_name).values_list(
        "prompt_id", "sample_index"
    )
    for prompt_id, index in rows:
        present[prompt_id].add(index)
    for skip in Job.objects.values_list("skipped", flat=True).get(pk=job.pk):
        if skip["model"] == model_name:
            present[skip["prompt_id"]].add(skip["sample_index"])
    return present


@dataclass(frozen=True)
class GeneratedSample:
    """One sample of a generation job; `refusal` says why the model gave no text."""

    prompt_id: int
    sample_index: int
    text: str
    generation_params: dict[str, Any]
    refusal: str = ""


@transaction.atomic
def responses_add_generated(
    *, job: Job, model_name: str, samples: Sequence[GeneratedSample]
) -> int:
    """Store generated samples; record on the job (`Job.skipped`) those not stored and why.

    Not stored: refused samples, empty ones (a response needs text) and those whose text,
    up to surrounding whitespace, equals another sample of the same prompt by this model
    in this job: a pair of equal texts offers nothing to choose and a rating repeats one.
    Samples the job already stored or skipped are left as they are, so a rerun doubles
    nothing. Returns how many were offered for storage.
    """
    seen = {
        (prompt_id, text.strip()): index
        for prompt_id, index, text in Response.objects.filter(
            job=job,
            model_name=model_name,
            prompt_id__any=sorted({s.prompt_id for s in samples}),
        ).values_list("prompt_id", "sample_index", "text")
    }
    rows: list[Response] = []
    skips: list[dict[str, Any]] = []
    for s in samples:
        text = s.text.strip()
        twin = seen.setdefault((s.prompt_id, text), s.sample_index)
        reason = (
            s.refusal
            or ("empty completion" if not text else "")
            or (f"same text as sample {twin}" if twin != s.sample_index else "")
        )
        if reason:
            skips.append(
                {
                    "prompt_id": s.prompt_id,
                    "model": model_name,
                    "sample_index": s.sample_index,
                    "reason": reason,
                }
            )
            continue
        rows.append(
            Response(
                job=job,
                prompt_id=s.prompt_id,
                model_name=model_name,
                sample_index=s.sample_index,
                text=s.text,
                generation_params=s.generation_params,
            )
        )
    Response.objects.bulk_create(rows, ignore_conflicts=True)
    if skips:
        logger.warning("job %s: %d samples of %s not stored", job.pk, len(skips), model_name)
        skipped = Job.objects.select_for_update().values_list("skipped", flat=True).get(pk=job.pk)
        known = {(k["prompt_id"], k["model"], k["sample_index"]) for k in skipped}
        new = [k for k in skips if (k["prompt_id"], k["model"], k["sample_index"]) not in known]
        if new:
            Job.objects.filter(pk=job.pk).update(skipped=[*skipped, *new])
    return len(rows)


# --- Judging --------------------------------------------------------------------------


def tasks_to_judge(*, job: Job, params: JudgeParams) -> tuple[int, list[tuple[Task, list[str]]]]:
    """(number of tasks the job covers, [(task, kinds still to ask)]), in task id order.

    A kind is done on a task when the judge's current answer to it holds that kind (from
    any job) or this job already kept the judge's output for it, parsed or not. Kinds are
    counted apart, so a span job after a rating job on the same tasks asks for spans.
    """
    layouts = {KIND_LAYOUT[kind] for kind in params.kinds}
    tasks = Task.objects.filter(project=job.project_id, layout__in=layouts)
    if params.task_ids is not None:
        tasks = tasks.filter(pk__any=params.task_ids)
    total = tasks.count()
    done: set[tuple[int, str]] = set(
        JudgeOutput.objects.filter(job=job).values_list("task_id", "kind")
    )
    current = Submission.objects.filter(judge=params.judge_id, is_current=True, task__in=tasks)
    answered = {
        FeedbackKind.PAIRWISE: current.filter(pairwise__isnull=False),
        FeedbackKind.RATING: current.filter(ratings__isnull=False),
        FeedbackKind.RANKING: current.filter(ranking__isnull=False),
        FeedbackKind.SPAN: current.filter(spans_checked=True),
        FeedbackKind.FREE_TEXT: current.filter(texts__mode=FreeTextFeedback.Mode.CRITIQUE),
    }
    for kind in params.kinds:
        done.update((task_id, kind) for task_id in answered[kind].values_list("task_id", flat=True))
    pending = []
    for task in tasks.select_related("prompt").prefetch_related("links__response").order_by("id"):
        kinds = [
            k for k in params.kinds if KIND_LAYOUT[k] == task.layout and (task.pk, k) not in done
        ]
        if kinds:
            pending.append((task, kinds))
    return total, pending


@dataclass(frozen=True)
class JudgeOutputInput:
    kind: str
    swapped: bool
    raw_output: str
    parsed: Any = None
    parse_error: str = ""


@transaction.atomic
def judge_result_save(
    *,
    job: Job,
    judge: Judge,
    task: Task,
    outputs: Sequence[JudgeOutputInput],
    feedback: FeedbackInput | None,
) -> Submission | None:
    """Keep the judge's raw outputs for a task and store what parsed as its answer.

    Never raises for bad feedback: a refusal (say a rating off the scale) is written into
    the outputs' parse errors. The judge's current answer to the task keeps the kinds it
    holds: new kinds are added to it in a new submission that supersedes it, and a
    duplicate run, which adds none, creates no superseded copy.
    """
    Task.objects.select_for_update().filter(pk=task.pk).first()
    previous = Submission.objects.filter(task=task, judge=judge, is_current=True).first()
    submission = None
    refusal = ""
    if feedback is not None and previous is not None:
        kept = submission_feedback(previous)
        feedback = feedback_merge(kept, feedback) if feedback.kinds - kept.kinds else None
    if feedback is not None and feedback.kinds:
        try:
            submission = submission_create(task=task, feedback=feedback, judge=judge, job=job)
        except FeedbackError as exc:
            refusal = f"Refused when stored: {exc}"
    JudgeOutput.objects.bulk_create(
        [
            JudgeOutput(
                job=job,
                task=task,
                judge=judge,
                kind=o.kind,
                swapped=o.swapped,
                raw_output=o.raw_output,
                parsed=o.parsed,
                parse_error=o.parse_error or refusal,
            )
            for o in outputs
        ],
        ignore_conflicts=True,
    )
    return submission
