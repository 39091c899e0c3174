"""The bodies of the jobs: rows to model inputs, model outputs to services. The Celery
tasks wrap these with claiming and finishing; tests call them directly (generation and
judging with a loader of their choice).

Generation, judging and scoring resume: they skip what the job already stored, so a job
redelivered after a lost worker continues where it was cut off. Training starts again
from the beginning, into the same directory.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings as django_settings

from feedback.jobs import (
    GeneratedSample,
    GenerateParams,
    GenerationRefused,
    JudgeOutputInput,
    JudgeParams,
    RewardData,
    RewardEvaluateParams,
    RewardTrainParams,
    ScoreParams,
    job_progress,
    judge_result_save,
    judge_sampling,
    prompts_to_generate,
    responses_add_generated,
    samples_present,
    score_new_responses,
    tasks_to_judge,
)
from feedback.models import FeedbackKind, Job, Judge, Response, RewardModel, Task
from feedback.rewards import (
    responses_to_score,
    reward_evaluation_save,
    reward_model_artifact_path,
    reward_model_create,
    scores_save,
)
from feedback.services import (
    FeedbackError,
    FeedbackInput,
    FreeTextInput,
    PairwiseInput,
    RatingInput,
    SpanInput,
    tasks_extend,
)
from worker.backends import Loader, generator_load, judge_model_spec
from worker.ml.device import seed_everything
from worker.ml.generation import Chat, Completion, GenerationParams, seed_salt
from worker.ml.judging import (
    DEFAULT_TEMPLATES,
    AspectSpec,
    JudgeParseError,
    LabelSpec,
    PairwiseVerdict,
    answer_schema,
    aspects_text,
    combine_swapped,
    conversation_text,
    parse_critique,
    parse_pairwise,
    parse_ranking,
    parse_ratings,
    parse_spans,
    render_template,
    responses_text,
)
from worker.ml.rewards import TrainConfig, evaluate, load_scorer, train
from worker.reward_data import reward_rows

# Prompts sent to a model per call, in multiples of its batch size: enough waiting rows
# for continuous batching to refill freed slots, few enough to lose little on a crash.
CHUNK_BATCHES = 4

logger = logging.getLogger(__name__)


class Progress:
    """Writes a job's progress at most every `interval` seconds (and when forced)."""

    def __init__(self, job: Job, total: int, done: int = 0, interval: float = 1.0) -> None:
        self.job, self.interval = job, interval
        self.last = time.monotonic()
        job_progress(job=job, done=min(done, total), total=total)

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.interval:
            job_progress(job=self.job, done=min(done, self.job.total))
            self.last = now


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- Generation -----------------------------------------------------------------------


def generation_run(job: Job, params: GenerateParams, *, load: Loader | None = None) -> None:
    """`params.n` responses per prompt from each model, then the tasks they need.

    Sample j of a prompt is seeded by (seed, model name, prompt id, j), so it does not
    depend on the batch size or on what an earlier attempt stored. Samples that are not
    stored (refused, empty, repeated) are recorded on the job; a model that refuses every
    prompt of its first chunk stops the job. Progress counts (prompt, model) pairs.
    """
    prompts = prompts_to_generate(job=job, params=params)
    progress = Progress(job, total=len(prompts) * len(params.models))
    seed_everything(params.seed)
    done = 0
    for spec in params.models:
        sampling = GenerationParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_new_tokens=params.max_new_tokens,
            seed=params.seed,
            batch_size=params.batch_size,
            salt=seed_salt(spec.name),
        )
        present = samples_present(job=job, model_name=spec.name)
        todo = [p for p in prompts if len(present.get(p.pk, ())) < params.n]
        done += len(prompts) - len(todo)
        progress.update(done, force=True)
        if not todo:
            continue
        generator = (load or generator_load)(spec)
        record = {
            "backend": spec.backend,
            "model": spec.location,
            **{k: v for k, v in asdict(sampling).items() if k not in {"batch_size", "salt"}},
        }
        answered = any(present.values())
        for chunk in chunks(todo, params.batch_size * CHUNK_BATCHES):
            base = done
            outputs = generator.generate(
                [p.turns for p in chunk],
                sampling,
                on_progress=lambda finished, _total, base=base: progress.update(
                    base + int(finished // params.n)
                ),
                keys=[p.pk for p in chunk],
            )
            refused = [c for cs in outputs for c in cs if c.finish_reason == "refused"]
            if not answered and len(refused) == len(chunk) * params.n:
                raise GenerationRefused(
                    f"{spec.name} refused all of the first {len(chunk)} prompts: "
                    f"{refused[0].refusal}"
                )
            answered = True
            samples = [
                GeneratedSample(
                    prompt.pk, index, c.text, {**record, **_usage(c)}, refusal=c.refusal
                )
                for prompt, completions in zip(chunk, outputs, strict=True)
                for index, c in enumerate(completions)
                if index not in present.get(prompt.pk, ())
            ]
            responses_add_generated(job=job, model_name=spec.name, samples=samples)
            done += len(chunk)
            progress.update(done, force=True)
    tasks_extend(project=job.project, prompt_ids=[p.pk for p in prompts])
    score_new_responses(project=job.project)


def _usage(completion: Completion) -> dict[str, Any]:
    return {
        "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
    }


# --- Judging --------------------------------------------------------------------------


class JudgeSetup:
    """What every judge prompt of a job shares: templates, aspects, labels, guidelines.

    Each question carries the JSON schema of its answer unless the judge's parameters say
    `"structured_output": false` (for an OpenAI-compatible server that refuses
    `response_format`); local models ignore it.
    """

    def __init__(self, judge: Judge, job: Job, kinds: Sequence[str]) -> None:
        project = job.project
        overrides = judge.parameters.get("templates", {})
        self.templates = {
            kind: overrides.get(kind) or judge.prompt_template or DEFAULT_TEMPLATES[kind]
            for kind in kinds
        }
        self.aspects = list(project.aspects.all())
        self.labels = list(project.span_labels.all())
        self.aspect_specs = [
            AspectSpec(a.name, a.scale_min, a.scale_max, a.rubric) for a in self.aspects
        ]
        self.label_specs = [LabelSpec(lb.name, lb.default_severity) for lb in self.labels]
        guidelines = project.guidelines.strip()
        self.guidelines = f"[Guidelines]\n{guidelines}\n" if guidelines else ""
        self.wants_rationale = (
            FeedbackKind.FREE_TEXT in project.feedback_kinds and project.asks_rationale
        )
        self.structured = bool(judge.parameters.get("structured_output", True))

    def values(self, task: Task, responses: list[Response]) -> dict[str, str]:
        label_lines = "\n".join(
            f"- {lb.name}: {lb.description}" if lb.description else f"- {lb.name}"
            for lb in self.labels
        )
        return {
            "prompt": conversation_text(task.prompt.turns),
            "guidelines": self.guidelines,
            "aspects": aspects_text(self.aspect_specs),
            "labels": label_lines,
            "responses": responses_text([r.text for r in responses]),
            "response": responses[0].text,
            "response_a": responses[0].text,
            "response_b": responses[-1].text,
        }

    def calls(
        self, task: Task, kinds: Sequence[str]
    ) -> list[tuple[str, bool, Chat, dict[str, Any] | None]]:
        """(kind, swapped, chat, answer schema) for each question about `task`, one per
        kind still to ask."""
        responses = [link.response for link in task.links.all()]
        values = self.values(task, responses)
        out = []
        for kind in kinds:
            schema = (
                answer_schema(
                    kind,
                    aspects=self.aspect_specs,
                    labels=self.label_specs,
                    count=len(responses),
                )
                if self.structured
                else None
            )
            chat = [{"role": "user", "content": render_template(self.templates[kind], values)}]
            out.append((kind, False, chat, schema))
            if kind == FeedbackKind.PAIRWISE:
                flipped = {
                    **values,
                    "response_a": values["response_b"],
                    "response_b": values["response_a"],
                }
                text = render_template(self.templates[kind], flipped)
                out.append((kind, True, [{"role": "user", "content": text}], schema))
        return out


@dataclass(frozen=True)
class _Reading:
    """What one judge output gave: its parsed form, a note, and feedback to store."""

    parsed: Any = None
    note: str = ""
    verdict: PairwiseVerdict | None = None
    feedback: FeedbackInput = field(default_factory=FeedbackInput)


def _read(setup: JudgeSetup, responses: list[Response], kind: str, text: str) -> _Reading:
    """One output of `kind` about a task showing `responses`; raises JudgeParseError."""
    if kind == FeedbackKind.PAIRWISE:
        verdict = parse_pairwise(text)
        return _Reading(asdict(verdict), verdict=verdict)
    if kind == FeedbackKind.RATING:
        result = parse_ratings(text, setup.aspect_specs)
        aspect_ids = {a.name: a.pk for a in setup.aspects}
        ratings = [
            RatingInput(responses[0].pk, aspect_ids[r.aspect], r.value, r.rationale)
            for r in result.ratings
        ]
        parsed = {r.aspect: {"rating": r.value, "rationale": r.rationale} for r in result.ratings}
        return _Reading(parsed, "; ".join(result.problems), feedback=FeedbackInput(ratings=ratings))
    if kind == FeedbackKind.RANKING:
        order = parse_ranking(text, len(responses))
        ranking = [responses[i].pk for i in order]
        return _Reading(
            {"ranking": [i + 1 for i in order]}, feedback=FeedbackInput(ranking=ranking)
        )
    if kind == FeedbackKind.SPAN:
        found = parse_spans(text, responses[0].text, setup.label_specs)
        label_ids = {lb.name: lb.pk for lb in setup.labels}
        spans = [
            SpanInput(responses[0].pk, label_ids[s.label], s.start, s.end, s.severity, s.comment)
            for s in found.spans
        ]
        parsed = {"spans": [asdict(s) for s in found.spans], "unmatched": list(found.unmatched)}
        missing = [f"quote not in the response: {q!r}" for q in found.unmatched]
        note = "; ".join([*found.problems, *missing])
        # "Nothing wrong" is an answer, but not when quotes were lost on the way.
        checked = not (found.problems or found.unmatched)
        return _Reading(parsed, note, feedback=FeedbackInput(spans=spans, spans_checked=checked))
    if kind == FeedbackKind.FREE_TEXT:
        critique = parse_critique(text)
        texts = [FreeTextInput("critique", critique, responses[0].pk)]
        return _Reading({"critique": critique}, feedback=FeedbackInput(texts=texts))
    raise JudgeParseError(f"unknown kind of feedback {kind!r}")


def judge_interpret(
    setup: JudgeSetup, task: Task, answers: Sequence[tuple[str, bool, Completion]]
) -> tuple[list[JudgeOutputInput], FeedbackInput | None]:
    """Parse each (kind, swapped, completion) answer about `task` into output rows and
    feedback; a question the model refused (too long for it) is noted with the reason.

    An output that cannot be read, for whatever reason, is kept with the reason as its
    parse error; it never fails the job.
    """
    responses = [link.response for link in task.links.all()]
    outputs: list[JudgeOutputInput] = []
    pairwise: dict[bool, PairwiseVerdict] = {}
    ratings: list[RatingInput] = []
    ranking: list[int] = []
    spans: list[SpanInput] = []
    texts: list[FreeTextInput] = []
    spans_checked = False
    for kind, swapped, completion in answers:
        text = completion.text
        try:
            if completion.finish_reason == "refused":
                raise JudgeParseError(f"the model was not asked: {completion.refusal}")
            reading = _read(setup, responses, kind, text)
        except JudgeParseError as exc:
            reading = _Reading(note=str(exc))
        except Exception as exc:
            # A bug met by one output must cost that output only: a job that raised would
            # be retried and meet it again on every attempt.
            logger.exception("could not read the judge's %s output on task %s", kind, task.pk)
            reading = _Reading(note=f"could not read the output: {type(exc).__name__}: {exc}")
        outputs.append(JudgeOutputInput(kind, swapped, text, reading.parsed, reading.note))
        if reading.verdict is not None:
            pairwise[swapped] = reading.verdict
        ratings += reading.feedback.ratings
        ranking = list(reading.feedback.ranking) or ranking
        spans += reading.feedback.spans
        spans_checked |= reading.feedback.spans_checked
        texts += reading.feedback.texts

    pair = None
    if len(pairwise) == 2:
        combined = combine_swapped(pairwise[False], pairwise[True])
        pair = PairwiseInput(combined.choice, combined.strength)
        if setup.wants_rationale and combined.explanation:
            texts.append(FreeTextInput("rationale", combined.explanation))
    feedback = FeedbackInput(
        pairwise=pair,
        ratings=ratings,
        ranking=ranking,
        spans=spans,
        texts=texts,
        spans_checked=spans_checked,
    )
    return outputs, feedback if feedback.kinds else None


def judging_run(job: Job, params: JudgeParams, *, load: Loader | None = None) -> None:
    """Ask the judge about every task of the job not answered yet; progress counts tasks."""
    judge = Judge.objects.get(pk=params.judge_id)
    total, pending = tasks_to_judge(job=job, params=params)
    progress = Progress(job, total=total, done=total - len(pending))
    if not pending:
        return
    setup = JudgeSetup(judge, job, params.kinds)
    settings = judge_sampling(judge)
    sampling = GenerationParams(
        n=1,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        seed=settings.seed,
        batch_size=settings.batch_size,
    )
    seed_everything(settings.seed)
    generator = (load or generator_load)(judge_model_spec(judge))
    done = total - len(pending)
    for chunk in chunks(pending, settings.batch_size * CHUNK_BATCHES):
        calls = [(task, *call) for task, kinds in chunk for call in setup.calls(task, kinds)]
        base, calls_per_task = done, len(calls) / len(chunk)
        outputs = generator.generate(
            [chat for _, _, _, chat, _ in calls],
            sampling,
            # Answers finish over the chunk's minutes: the bar moves by tasks' worth of them.
            on_progress=lambda finished, _total, base=base, per=calls_per_task: progress.update(
                base + int(finished / per)
            ),
            # Each question draws its own stream, wherever it falls in a chunk.
            keys=[seed_salt(f"{task.pk}/{kind}/{swapped}") for task, kind, swapped, *_ in calls],
            schemas=[schema for *_, schema in calls],
        )
        answers = [
            (task, kind, swapped, completions[0])
            for (task, kind, swapped, _, _), completions in zip(calls, outputs, strict=True)
        ]
        for task, group in itertools.groupby(answers, key=lambda a: a[0]):
            rows, feedback = judge_interpret(setup, task, [a[1:] for a in group])
            judge_result_save(job=job, judge=judge, task=task, outputs=rows, feedback=feedback)
        done += len(chunk)
        progress.update(done, force=True)


# --- Reward models ----------------------------------------------------------------------

# Responses scored per call of the model and per write of their scores.
SCORE_CHUNK = 512


def reward_training_run(job: Job, params: RewardTrainParams) -> None:
    """Train on the export's rows into the job's artifact directory, then store the row.

    Progress counts optimiser steps as the trainer reports them. A cancelled job stops at
    its next report and stores no model.
    """
    rows = reward_rows(job.project, params.data, listwise=True)
    if not rows.comparisons and not rows.rankings:
        raise FeedbackError(
            "The export gave nothing to train on: no pairs or rankings from these sources."
        )
    out_dir = Path(django_settings.ARTIFACT_ROOT) / reward_model_artifact_path(job=job)
    if out_dir.exists():  # an earlier attempt's files
        shutil.rmtree(out_dir)
    config = TrainConfig(
        backbone=params.backbone,
        backbone_kind=params.backbone_kind,
        **params.training.model_dump(),
    )
    progress: Progress | None = None

    def report(event: dict[str, Any]) -> None:
        nonlocal progress
        if event["phase"] != "train":
            return
        if progress is None:
            progress = Progress(job, total=event["total_steps"])
        progress.update(event["step"], force=event["step"] == event["total_steps"])

    result = train(rows.comparisons, rows.rankings, config, out_dir, progress=report)
    job_progress(job=job, done=job.total)  # raises JobCancelled if it was cancelled meanwhile
    reward_model_create(
        job=job,
        name=params.name,
        backbone=params.backbone,
        backbone_kind=params.backbone_kind,
        parameters={
            "data": params.data.model_dump(mode="json"),
            "training": asdict(config),
            "n_train": result.n_train,
            "n_held_out": result.n_held_out,
        },
        export_options=rows.export_options,
        data_snapshot=rows.snapshot,
        metrics=result.metrics,
        curve=result.curve,
    )


def scoring_run(job: Job, params: ScoreParams) -> None:
    """Score the project's responses (those without a score, with `only_missing`) with the
    model; scores are written per chunk, so a rerun picks up where one stopped."""
    model = RewardModel.objects.get(pk=params.reward_model_id)
    ids = list(
        responses_to_score(
            project=job.project, reward_model_id=model.pk, only_missing=params.only_missing
        ).values_list("pk", flat=True)
    )
    progress = Progress(job, total=len(ids))
    if not ids:
        return
    scorer = load_scorer(model.artifact_dir)
    done = 0
    for chunk in chunks(ids, SCORE_CHUNK):
        rows = (
            Response.objects.filter(pk__any=list(chunk))
            .order_by("id")
            .values_list("pk", "text", "prompt__text", "prompt__messages")
        )
        response_ids, texts, prompts = [], [], []
        for pk, text, prompt_text, messages in rows:
            response_ids.append(pk)
            texts.append(text)
            prompts.append(messages or [{"role": "user", "content": prompt_text}])
        # Every head: the selectors that read a model's uncertainty compare them.
        scores = scorer.score_heads(prompts, texts, batch_size=params.batch_size)
        scores_save(
            reward_model_id=model.pk,
            scores=list(zip(response_ids, (float(x) for x in scores[0]), strict=True)),
            head_scores=scores.T.tolist() if len(scores) > 1 else None,
        )
        done += len(chunk)
        progress.update(done, force=True)


def reward_evaluation_run(job: Job, params: RewardEvaluateParams) -> None:
    """Score each response of the job's project's comparisons once and store the metrics.

    The model may come from another project; `data` defaults to the model's own choice.
    """
    model = RewardModel.objects.get(pk=params.reward_model_id)
    data = params.data or RewardData.model_validate(model.parameters["data"])
    rows = reward_rows(job.project, data, listwise=False)
    if not rows.comparisons:
        raise FeedbackError("The export gave no pairs to evaluate on from these sources.")
    responses: dict[int, tuple[list[dict[str, str]], str]] = {}
    for comparison, (chosen, rejected) in zip(rows.comparisons, rows.pair_ids, strict=True):
        responses[chosen] = (comparison.prompt, comparison.chosen)
        responses[rejected] = (comparison.prompt, comparison.rejected)
    ids = list(responses)
    progress = Progress(job, total=len(ids))
    scorer = load_scorer(model.artifact_dir)
    score: dict[int, float] = {}
    for chunk in chunks(ids, SCORE_CHUNK):
        values = scorer.score(
            [responses[pk][0] for pk in chunk], [responses[pk][1] for pk in chunk]
        )
        score.update(zip(chunk, (float(x) for x in values), strict=True))
        progress.update(len(score), force=True)
    metrics = evaluate(
        np.array([score[chosen] for chosen, _ in rows.pair_ids]),
        np.array([score[rejected] for _, rejected in rows.pair_ids]),
        rows.comparisons,
    )
    reward_evaluation_save(
        reward_model_id=model.pk,
        project=job.project,
        job=job,
        export_options=rows.export_options,
        data_snapshot=rows.snapshot,
        metrics=metrics,
    )
