"""The feedback domain: projects, prompts, candidate responses, tasks and five kinds of feedback.

Every rule that one row can state is a database constraint. Rules that span tables (a span
inside its response's text, a rating inside its aspect's scale, a label of the task's
project) are checked in `clean()`, which the services call before saving.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length
from django.utils import timezone

from feedback.endpoints import endpoint_refusal, local_model_refusal
from feedback.rows import columns, from_row, prepared_cursor


class FeedbackKind(models.TextChoices):
    PAIRWISE = "pairwise", "Pairwise comparison"
    RATING = "rating", "Rating"
    RANKING = "ranking", "Ranking"
    SPAN = "span", "Fine-grained spans"
    FREE_TEXT = "free_text", "Free text"


class Project(models.Model):
    """An annotation project and its feedback configuration."""

    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators.")
    collects_pairwise = models.BooleanField(default=True)
    collects_rating = models.BooleanField(default=False)
    collects_ranking = models.BooleanField(default=False)
    collects_spans = models.BooleanField(default=False)
    collects_free_text = models.BooleanField(default=False)
    asks_critique = models.BooleanField(default=False, help_text="Free text: critique.")
    asks_rewrite = models.BooleanField(default=False, help_text="Free text: rewrite.")
    asks_rationale = models.BooleanField(default=False, help_text="Free text: rationale.")
    ranking_size = models.PositiveSmallIntegerField(
        default=4, help_text="Most candidates shown in one ranking task."
    )
    annotators_per_task = models.PositiveSmallIntegerField(
        default=1, help_text="How many different annotators judge each task."
    )
    lease_minutes = models.PositiveSmallIntegerField(
        default=30, help_text="A task handed out and not submitted returns to the queue after this."
    )
    show_judge_suggestions = models.BooleanField(
        default=False, help_text="Show LLM-judge feedback to annotators as a marked suggestion."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                name="project_collects_some_kind",
                condition=Q(collects_pairwise=True)
                | Q(collects_rating=True)
                | Q(collects_ranking=True)
                | Q(collects_spans=True)
                | Q(collects_free_text=True),
                violation_error_message="A project must collect at least one kind of feedback.",
            ),
            models.CheckConstraint(
                name="project_free_text_has_mode",
                condition=Q(collects_free_text=False)
                | Q(asks_critique=True)
                | Q(asks_rewrite=True)
                | Q(asks_rationale=True),
                violation_error_message="Free-text feedback needs critique, rewrite or rationale.",
            ),
            models.CheckConstraint(
                name="project_ranking_size_at_least_two",
                condition=Q(ranking_size__gte=2),
                violation_error_message="A ranking needs at least two candidates.",
            ),
            models.CheckConstraint(
                name="project_annotators_per_task_positive",
                condition=Q(annotators_per_task__gte=1),
                violation_error_message="Each task needs at least one annotator.",
            ),
            models.CheckConstraint(
                name="project_lease_positive",
                condition=Q(lease_minutes__gte=1),
                violation_error_message="The lease must be at least one minute.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def feedback_kinds(self) -> list[FeedbackKind]:
        flags = {
            FeedbackKind.PAIRWISE: self.collects_pairwise,
            FeedbackKind.RATING: self.collects_rating,
            FeedbackKind.RANKING: self.collects_ranking,
            FeedbackKind.SPAN: self.collects_spans,
            FeedbackKind.FREE_TEXT: self.collects_free_text,
        }
        return [kind for kind, on in flags.items() if on]

    @property
    def free_text_modes(self) -> list[FreeTextFeedback.Mode]:
        if not self.collects_free_text:
            return []
        flags = {
            FreeTextFeedback.Mode.CRITIQUE: self.asks_critique,
            FreeTextFeedback.Mode.REWRITE: self.asks_rewrite,
            FreeTextFeedback.Mode.RATIONALE: self.asks_rationale,
        }
        return [mode for mode, on in flags.items() if on]


class ProjectMember(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        ANNOTATOR = "annotator", "Annotator"
        VIEWER = "viewer", "Viewer"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "user"],
                name="projectmember_one_role_per_user",
                violation_error_message="This user already has a role in the project.",
            ),
            models.CheckConstraint(
                name="projectmember_role_valid",
                condition=Q(role__in=["admin", "annotator", "viewer"]),
                violation_error_message="Unknown role.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.project}"


class RatingAspect(models.Model):
    """One rated dimension (helpfulness, honesty...) with its scale and rubric."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="aspects")
    name = models.CharField(max_length=100)
    rubric = models.TextField(blank=True, help_text="Markdown: what each score means.")
    scale_min = models.SmallIntegerField(default=1)
    scale_max = models.SmallIntegerField(default=5)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"],
                name="ratingaspect_unique_name",
                violation_error_message="The project already has an aspect with this name.",
            ),
            models.CheckConstraint(
                name="ratingaspect_scale_ordered",
                condition=Q(scale_min__lt=F("scale_max")),
                violation_error_message="The scale's minimum must be below its maximum.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.scale_min}-{self.scale_max})"


class Severity(models.TextChoices):
    MINOR = "minor", "Minor"
    MAJOR = "major", "Major"
    CRITICAL = "critical", "Critical"


class SpanLabel(models.Model):
    """A category an annotator can give a highlighted part of a response."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="span_labels")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    color = models.CharField(max_length=7, default="#f59e0b", help_text="#rrggbb")
    default_severity = models.CharField(
        max_length=16, choices=Severity.choices, default=Severity.MINOR
    )
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"],
                name="spanlabel_unique_name",
                violation_error_message="The project already has a label with this name.",
            ),
            models.CheckConstraint(
                name="spanlabel_color_hex",
                condition=Q(color__regex=r"^#[0-9a-fA-F]{6}$"),
                violation_error_message="Colour must be #rrggbb.",
            ),
            models.CheckConstraint(
                name="spanlabel_default_severity_valid",
                condition=Q(default_severity__in=Severity.values),
                violation_error_message="Unknown severity.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Prompt(models.Model):
    """A single-turn text prompt or a multi-turn chat ending in a user turn."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=200, blank=True)
    text = models.TextField(blank=True)
    messages = models.JSONField(
        null=True, blank=True, help_text='Chat turns: [{"role": "user", "content": "..."}].'
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=~Q(external_id=""),
                name="prompt_unique_external_id",
                violation_error_message="A prompt with this external id already exists.",
            ),
            # Exactly one form: plain text or chat messages.
            models.CheckConstraint(
                name="prompt_text_xor_messages",
                condition=(Q(messages__isnull=True) & ~Q(text=""))
                | (Q(messages__isnull=False) & Q(text="")),
                violation_error_message="A prompt is either text or chat messages, not both.",
            ),
        ]

    def __str__(self) -> str:
        return self.external_id or f"prompt {self.pk}"

    @property
    def turns(self) -> list[dict[str, str]]:
        """The prompt as chat messages, whichever form it was stored in."""
        if self.messages is not None:
            return self.messages
        return [{"role": "user", "content": self.text}]

    @property
    def last_user_text(self) -> str:
        return next(m["content"] for m in reversed(self.turns) if m["role"] == "user")

    def clean(self) -> None:
        if self.messages is not None:
            from feedback.schemas import parse_messages

            try:
                parse_messages(self.messages)
            except ValueError as exc:
                raise ValidationError({"messages": str(exc)}) from exc


class Job(models.Model):
    """Background work (generation, judging, training...) as a row the pages can poll."""

    class Kind(models.TextChoices):
        GENERATE = "generate", "Generate candidates"
        JUDGE = "judge", "LLM judge"
        TRAIN_REWARD = "train_reward", "Train a reward model"
        SCORE = "score", "Score responses"
        EVALUATE_REWARD = "evaluate_reward", "Evaluate a reward model"
        SELECT = "select", "Select pairs (a round)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # A generation job's samples that were not stored, and why (prompt over the context,
    # refused by the server, empty, same text as another sample): open data for the page,
    # and what a resumed job need not ask again.
    skipped = models.JSONField(
        default=list,
        blank=True,
        help_text='[{"prompt_id", "model", "sample_index", "reason"}]',
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    start_key = models.UUIDField(
        null=True, blank=True, help_text="Key of the form that started it: a resent form finds it."
    )
    # Written by the worker running the job (with progress and on a timer): a running job
    # whose heartbeat is old lost its worker, whatever its status says.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "status"])]
        constraints = [
            # A double-clicked Start sends one form twice: the second finds the first's job.
            models.UniqueConstraint(
                fields=["project", "start_key"],
                condition=Q(start_key__isnull=False),
                name="job_one_per_start_key",
                violation_error_message="This form already started a job.",
            ),
            models.CheckConstraint(
                name="job_status_valid",
                condition=Q(status__in=["queued", "running", "succeeded", "failed", "cancelled"]),
                violation_error_message="Unknown job status.",
            ),
            models.CheckConstraint(
                name="job_done_within_total",
                condition=Q(done__lte=F("total")),
                violation_error_message="A job cannot have done more than its total.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def elapsed(self) -> timedelta | None:
        """How long the last attempt ran: until it ended, or until now while it runs."""
        if self.started_at is None or self.status == self.Status.QUEUED:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    @property
    def is_stalled(self) -> bool:
        """Running, but no heartbeat for `JOB_STALLED_MINUTES`: its worker is gone."""
        if self.status != self.Status.RUNNING:
            return False
        beat = self.heartbeat_at or self.started_at
        cutoff = timezone.now() - timedelta(minutes=settings.JOB_STALLED_MINUTES)
        return beat is None or beat < cutoff


class MarkdownCount(models.Func):
    """How many Markdown headers, list items or bold spans a text has, as LMSYS's style
    control counts them (`fastchat/serve/monitor/add_markdown_info.py`).

    PostgreSQL counts with `regexp_count`, run only on a text that holds a string every
    match needs (`strpos`, ~20 times cheaper): most texts have no header or bold, and
    each regexp_count cost ~2.5 us of an imported response. SQLite (the demo), which has no
    regular expressions, counts literal markers with REPLACE and misses indented list items.
    """

    output_field = models.IntegerField()
    # kind -> (PostgreSQL regular expression, its flags, strings one of which every match
    # holds (none: always run), SQLite's markers, per match)
    KINDS = {
        "headers": (r"^#{1,6}[ \t]", "n", ["#"], ["\n#"], 1),
        "list_items": (
            r"^[ \t]*([0-9]+\.|[-*+])[ \t]",
            "n",
            [],  # ". " and "- " are in most prose: no cheap test to skip the count
            ["\n- ", "\n* ", "\n+ ", *(f"\n{n}. " for n in range(1, 10))],
            1,
        ),
        "bold": (r"\*\*[^*\n]+\*\*|__[^_\n]+__", "", ["**", "__"], ["**", "__"], 2),
    }

    def __init__(self, expression: Any, kind: str, **extra: Any) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind is one of {', '.join(self.KINDS)}, not {kind!r}")
        self.kind = kind
        super().__init__(expression, **extra)

    def as_postgresql(self, compiler, connection, **extra_context):
        text, params = compiler.compile(self.get_source_expressions()[0])
        pattern, flags, needed, _, _ = self.KINDS[self.kind]
        count = f"regexp_count({text}, %s, 1, %s)"
        if not needed:
            return count, [*params, pattern, flags]
        test = " OR ".join(f"strpos({text}, %s) > 0" for _ in needed)
        test_params = [value for string in needed for value in (*params, string)]
        return (
            f"(CASE WHEN {test} THEN {count} ELSE 0 END)",
            [*test_params, *params, pattern, flags],
        )

    def as_sql(self, compiler, connection, **extra_context):
        text, params = compiler.compile(self.get_source_expressions()[0])
        _, _, _, markers, per_match = self.KINDS[self.kind]
        lines = f"(%s || {text})"  # a newline first, so the first line counts too
        terms, term_params = [], []
        for marker in markers:
            terms.append(f"(LENGTH({lines}) - LENGTH(REPLACE({lines}, %s, ''))) / {len(marker)}")
            term_params += ["\n", *params, "\n", *params, marker]
        return f"(({' + '.join(terms)}) / {per_match})", term_params


def _style_column(expression: models.Expression) -> models.GeneratedField:
    return models.GeneratedField(
        expression=expression, output_field=models.IntegerField(), db_persist=True
    )


class Response(models.Model):
    """A candidate response to a prompt, with where it came from.

    The style columns are computed by the database on every write, however the row got
    there (import, generation job, bulk COPY): the leaderboard's style control compares
    them over hundreds of thousands of responses, too many to measure at read time
    (about 10 us a response at write).
    """

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    text = models.TextField()
    model_name = models.CharField(
        max_length=200, blank=True, help_text="The model that wrote it; blank for a person."
    )
    # Most responses have no author and no job: neither column gets a plain index, which
    # would hold an entry for every NULL (see Meta). A lookup by either is by a value.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        db_index=False,
        on_delete=models.SET_NULL,
        related_name="written_responses",
        help_text="The person who wrote it, when a person did.",
    )
    generation_params = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey(
        Job,
        null=True,
        blank=True,
        db_index=False,  # response_one_per_job_sample leads with job
        on_delete=models.SET_NULL,
        related_name="responses",
    )
    sample_index = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Style, for the leaderboard's style control: characters and Markdown elements.
    length = _style_column(Length("text"))
    markdown_headers = _style_column(MarkdownCount("text", "headers"))
    markdown_list_items = _style_column(MarkdownCount("text", "list_items"))
    markdown_bold = _style_column(MarkdownCount("text", "bold"))

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                name="response_text_not_empty",
                condition=~Q(text=""),
                violation_error_message="A response needs text.",
            ),
            # A retried generation job finds its earlier samples instead of adding copies.
            models.UniqueConstraint(
                fields=["job", "prompt", "model_name", "sample_index"],
                condition=Q(job__isnull=False),
                name="response_one_per_job_sample",
                violation_error_message="This job already generated that sample.",
            ),
        ]
        indexes = [
            models.Index(
                fields=["author"], condition=Q(author__isnull=False), name="response_author"
            ),
        ]

    def __str__(self) -> str:
        return f"response {self.pk} by {self.model_name or self.author or 'unknown'}"


class Task(models.Model):
    """What one annotator sees at once: one response, a pair, or a list to rank."""

    class Layout(models.TextChoices):
        SINGLE = "single", "One response"
        PAIR = "pair", "Pair"
        LIST = "list", "List to rank"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="tasks")
    layout = models.CharField(max_length=8, choices=Layout.choices)
    responses = models.ManyToManyField(Response, through="TaskResponse", related_name="tasks")
    priority = models.FloatField(
        default=0.0, help_text="Higher is served first (active learning sets it)."
    )
    # Denormalised from Assignment so the queue finds open tasks through one partial index
    # instead of counting leases per task; kept in step by feedback.queue only.
    slots_taken = models.PositiveSmallIntegerField(
        default=0, help_text="Annotators holding a lease on the task or done with it."
    )
    is_full = models.BooleanField(
        default=False, help_text="slots_taken has reached the project's annotators_per_task."
    )
    # People and judges favour what they see first (Zheng et al. 2023): the responses'
    # display order (TaskResponse.position) is shuffled with this seed when the task is made.
    display_seed = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seed that shuffled the display order; null: id order."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        # Every index is written by each task an import makes. A project's tasks are found
        # by project_id's index; none is read in priority order but the open ones below.
        indexes = [
            # The queue's scan: open tasks of a project in serving order. Full tasks (most of
            # a mature project) are not in it, so the scan never walks past them.
            models.Index(
                fields=["project", "-priority", "id"],
                condition=Q(is_full=False),
                name="task_open_queue",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                name="task_layout_valid",
                condition=Q(layout__in=["single", "pair", "list"]),
                violation_error_message="Unknown task layout.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.layout} task {self.pk}"

    def ordered_responses(self) -> list[Response]:
        """In display order; read once per instance, unless the statement that read the
        annotator's card brought them (keep_ordered_responses)."""
        if not hasattr(self, "_ordered_responses"):
            with prepared_cursor() as cursor:
                cursor.execute(
                    f"SELECT {columns(Response, 'r')} FROM feedback_taskresponse l"
                    " JOIN feedback_response r ON r.id = l.response_id"
                    " WHERE l.task_id = %s ORDER BY l.position",
                    [self.pk],
                )
                self._ordered_responses = [from_row(Response, row) for row in cursor.fetchall()]
        return self._ordered_responses

    def keep_ordered_responses(self, responses: list[Response]) -> None:
        self._ordered_responses = responses

    def clean(self) -> None:
        if self.prompt_id and self.project_id and self.prompt.project_id != self.project_id:
            raise ValidationError({"prompt": "The prompt belongs to another project."})


class TaskResponse(models.Model):
    """A response's place in a task: position 0 is A in a pair."""

    # No index of its own: both unique constraints lead with task.
    task = models.ForeignKey(Task, db_index=False, on_delete=models.CASCADE, related_name="links")
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="task_links")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["task", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "position"],
                name="taskresponse_unique_position",
                violation_error_message="Two responses at one position.",
            ),
            models.UniqueConstraint(
                fields=["task", "response"],
                name="taskresponse_unique_response",
                violation_error_message="A response appears twice in the task.",
            ),
        ]

    def __str__(self) -> str:
        return f"task {self.task_id} #{self.position}: response {self.response_id}"


class Assignment(models.Model):
    """One annotator's lease on one task: handed out, then submitted, skipped or expired.

    The queue (feedback.queue) is the only writer; Task.slots_taken counts the active and
    submitted rows of each task.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    leased_until = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was first submitted, skipped or expired."
    )

    class Meta:
        ordering = ["id"]
        indexes = [
            # Progress counts and "previous task" look-ups of one annotator; with the id last,
            # the look-up walks back along it to the first row (ties on finished_at are
            # ordered by id), instead of sorting every answer of the annotator.
            models.Index(
                fields=["project", "annotator", "status", "finished_at", "id"],
                name="assignment_annotator_order",
            ),
            # Expiry sweeps look only at live leases.
            models.Index(
                fields=["leased_until"],
                condition=Q(status="active"),
                name="assignment_active_lease",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                name="assignment_status_valid",
                condition=Q(status__in=["active", "submitted", "skipped", "expired"]),
                violation_error_message="Unknown assignment status.",
            ),
            # Expired leases stay as history; any other state means the annotator has (or had)
            # the task, so it is never handed to them again.
            models.UniqueConstraint(
                fields=["task", "annotator"],
                condition=~Q(status="expired"),
                name="assignment_once_per_annotator",
                violation_error_message="This annotator already has this task.",
            ),
            models.UniqueConstraint(
                fields=["project", "annotator"],
                condition=Q(status="active"),
                name="assignment_one_active_per_project",
                violation_error_message="The annotator already holds a task in this project.",
            ),
        ]

    def __str__(self) -> str:
        return f"task {self.task_id} to user {self.annotator_id} ({self.status})"


class AnnotatorProgress(models.Model):
    """How many tasks of a project an annotator has submitted: the "You: n" of every card.

    Kept by database triggers on feedback_assignment (migration 0017; on the demo's SQLite,
    feedback.sqlite), whoever writes the leases, so it cannot drift; counting the leases
    instead read every answer of the annotator, 1 ms a card at 3,000 answers and growing.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    submitted = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "annotator"], name="annotator_progress_once"
            ),
        ]

    def __str__(self) -> str:
        return f"user {self.annotator_id} in project {self.project_id}: {self.submitted}"


class Judge(models.Model):
    """An LLM judge, stored as data: model, backend, prompt template and parameters."""

    class Backend(models.TextChoices):
        TRANSFORMERS = "transformers", "Local transformers model"
        OPENAI = "openai", "OpenAI-compatible HTTP endpoint"

    name = models.CharField(max_length=200, unique=True)
    backend = models.CharField(max_length=16, choices=Backend.choices, default=Backend.TRANSFORMERS)
    model_name = models.CharField(max_length=500, help_text="Hub name, local path or served name.")
    endpoint = models.CharField(
        max_length=100,
        blank=True,
        help_text="For the OpenAI-compatible backend: a name from the operator's "
        "INFERENCE_ENDPOINTS, which also says where the key is read from.",
    )
    prompt_template = models.TextField(
        blank=True, help_text="Placeholders such as {prompt} and {response}; blank for default."
    )
    parameters = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                name="judge_backend_valid",
                condition=Q(backend__in=["transformers", "openai"]),
                violation_error_message="Unknown judge backend.",
            ),
            models.CheckConstraint(
                name="judge_openai_needs_endpoint",
                condition=~Q(backend="openai") | ~Q(endpoint=""),
                violation_error_message="The OpenAI-compatible backend needs an endpoint.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Only what the operator allows: a registered endpoint, an allowed local model."""
        errors: dict[str, str] = {}
        remote = self.backend == self.Backend.OPENAI
        if remote and self.endpoint and (refusal := endpoint_refusal(self.endpoint)):
            errors["endpoint"] = refusal
        if not remote and self.model_name and (refusal := local_model_refusal(self.model_name)):
            errors["model_name"] = refusal
        if isinstance(self.parameters, dict) and "api_key_env" in self.parameters:
            errors["parameters"] = (
                "api_key_env is set per endpoint by the operator (INFERENCE_ENDPOINTS); remove it."
            )
        if errors:
            raise ValidationError(errors)


class Submission(models.Model):
    """One annotator's or judge's answer to one task; the feedback records hang off it.

    Changing an answer adds a new submission and marks the old one superseded, so the
    history stays and exports read `is_current` rows only.
    """

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="submissions")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="submissions",
    )
    judge = models.ForeignKey(
        Judge, null=True, blank=True, on_delete=models.PROTECT, related_name="submissions"
    )
    job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="submissions"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    duration_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Time the annotator or judge spent on the task."
    )
    is_current = models.BooleanField(default=True)
    spans_checked = models.BooleanField(
        default=False,
        help_text="The source looked for spans: no span records then means none were found.",
    )
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="superseded_by"
    )
    submit_key = models.UUIDField(
        null=True, blank=True, help_text="Key of the rendered task card the answer came from."
    )

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["task", "is_current"])]
        constraints = [
            # A double-clicked submit sends one card twice: the second finds the first answer
            # instead of superseding it with a copy.
            models.UniqueConstraint(
                fields=["task", "annotator", "submit_key"],
                condition=Q(submit_key__isnull=False),
                name="submission_one_per_submit_key",
                violation_error_message="This card's answer was already stored.",
            ),
            models.CheckConstraint(
                name="submission_one_source",
                condition=Q(annotator__isnull=False, judge__isnull=True)
                | Q(annotator__isnull=True, judge__isnull=False),
                violation_error_message="Feedback comes from an annotator or a judge, not both.",
            ),
            models.UniqueConstraint(
                fields=["task", "annotator"],
                condition=Q(is_current=True, annotator__isnull=False),
                name="submission_one_current_per_annotator",
                violation_error_message="This annotator already answered this task.",
            ),
            models.UniqueConstraint(
                fields=["task", "judge"],
                condition=Q(is_current=True, judge__isnull=False),
                name="submission_one_current_per_judge",
                violation_error_message="This judge already answered this task.",
            ),
        ]

    def __str__(self) -> str:
        return f"submission {self.pk} on task {self.task_id} by {self.source_label}"

    @property
    def source_label(self) -> str:
        return f"judge:{self.judge}" if self.judge_id else f"user:{self.annotator}"


class PairwiseFeedback(models.Model):
    class Choice(models.TextChoices):
        A = "A", "A is better"
        B = "B", "B is better"
        TIE = "tie", "Tie"

    class Strength(models.IntegerChoices):
        SLIGHTLY = 1, "Slightly better"
        CLEARLY = 2, "Clearly better"
        MUCH = 3, "Much better"

    submission = models.OneToOneField(Submission, on_delete=models.CASCADE, related_name="pairwise")
    choice = models.CharField(max_length=3, choices=Choice.choices)
    strength = models.PositiveSmallIntegerField(
        choices=Strength.choices, null=True, blank=True, help_text="Empty for a tie."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="pairwisefeedback_choice_valid",
                condition=Q(choice__in=["A", "B", "tie"]),
                violation_error_message="Choose A, B or tie.",
            ),
            models.CheckConstraint(
                name="pairwisefeedback_strength_valid",
                condition=Q(strength__isnull=True) | Q(strength__in=[1, 2, 3]),
                violation_error_message="Strength is 1 (slightly), 2 (clearly) or 3 (much).",
            ),
            models.CheckConstraint(
                name="pairwisefeedback_tie_has_no_strength",
                condition=~Q(choice="tie") | Q(strength__isnull=True),
                violation_error_message="A tie has no strength.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.choice} ({self.get_strength_display() or 'no strength'})"

    def clean(self) -> None:
        if self.submission.task.layout != Task.Layout.PAIR:
            raise ValidationError({"choice": "Pairwise feedback needs a task with a pair."})


class PairwiseTally(models.Model):
    """A pair task's current pairwise votes, counted by outcome and kind of source.

    The leaderboard reads these counts, a row per voted task, instead of every vote (a
    million votes took seconds to join and group). The task's project, prompt and two
    responses are copied in, since they never change once the task exists. Kept by
    `submission_create` in the answer's transaction (an answer that replaces another
    moves its count); `pairwise_tally_rebuild` counts it afresh from the votes.
    """

    task = models.OneToOneField(
        Task, primary_key=True, on_delete=models.CASCADE, related_name="pairwise_tally"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="+")
    first_response = models.ForeignKey(  # position 0: A
        Response, on_delete=models.CASCADE, related_name="+"
    )
    second_response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    annotator_first_wins = models.PositiveIntegerField(default=0)
    annotator_second_wins = models.PositiveIntegerField(default=0)
    annotator_ties = models.PositiveIntegerField(default=0)
    judge_first_wins = models.PositiveIntegerField(default=0)
    judge_second_wins = models.PositiveIntegerField(default=0)
    judge_ties = models.PositiveIntegerField(default=0)

    # The count column of each (kind of source, choice).
    COLUMNS = {
        (source, choice): f"{source}_{outcome}"
        for source in ("annotator", "judge")
        for choice, outcome in (("A", "first_wins"), ("B", "second_wins"), ("tie", "ties"))
    }

    def __str__(self) -> str:
        return f"pairwise tally of task {self.task_id}"


class ResponseEdit(models.Model):
    """When a project's stored responses last changed (an UPDATE of any of them: model
    name, text, prompt), as a number drawn from a sequence, so never the same twice.

    Written only by a PostgreSQL trigger (migration 0013), whatever made the change (the
    admin, SQL); nothing in Django saves it. The leaderboard keeps each project's
    response table in memory under this number instead of reading hundreds of thousands
    of responses for every build; a rolled-back change leaves the earlier number, whose
    table is again the right one. New responses need no number: the leaderboard rereads
    when a vote names a response it has not seen.
    """

    project = models.OneToOneField(
        Project, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    version = models.BigIntegerField()

    def __str__(self) -> str:
        return f"responses of project {self.project_id}: version {self.version}"


class RatingFeedback(models.Model):
    """One aspect's score of one response."""

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="ratings")
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="ratings")
    aspect = models.ForeignKey(RatingAspect, on_delete=models.PROTECT, related_name="ratings")
    value = models.SmallIntegerField()
    rationale = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["submission", "response", "aspect"],
                name="ratingfeedback_one_value_per_aspect",
                violation_error_message="This aspect of this response is already rated.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.aspect_id}={self.value} for response {self.response_id}"

    def clean(self) -> None:
        task = self.submission.task
        if self.aspect.project_id != task.project_id:
            raise ValidationError(
                {"aspect": f"{self.aspect.name} is not an aspect of this project."}
            )
        if not task.links.filter(response_id=self.response_id).exists():
            raise ValidationError({"response": "The response is not part of this task."})
        if not self.aspect.scale_min <= self.value <= self.aspect.scale_max:
            raise ValidationError(
                {
                    "value": f"{self.value} is outside {self.aspect.name}'s scale "
                    f"{self.aspect.scale_min}-{self.aspect.scale_max}."
                }
            )


class RankingFeedback(models.Model):
    """A full order over the task's candidates, one entry per candidate."""

    submission = models.OneToOneField(Submission, on_delete=models.CASCADE, related_name="ranking")

    def __str__(self) -> str:
        return f"ranking of submission {self.submission_id}"

    def clean_entries(self, response_ids: list[int]) -> None:
        """Check that `response_ids` (best first) is a permutation of the task's candidates."""
        task = self.submission.task
        if task.layout != Task.Layout.LIST:
            raise ValidationError({"ranking": "Ranking needs a task with a list of responses."})
        expected = set(task.links.values_list("response_id", flat=True))
        if len(response_ids) != len(set(response_ids)) or set(response_ids) != expected:
            raise ValidationError(
                {
                    "ranking": "The order must name each of the task's "
                    f"{len(expected)} responses exactly once."
                }
            )


class RankingEntry(models.Model):
    ranking = models.ForeignKey(RankingFeedback, on_delete=models.CASCADE, related_name="entries")
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="ranking_entries")
    rank = models.PositiveSmallIntegerField(help_text="1 is best.")

    class Meta:
        ordering = ["ranking", "rank"]
        constraints = [
            models.UniqueConstraint(
                fields=["ranking", "rank"],
                name="rankingentry_unique_rank",
                violation_error_message="Two responses share a rank.",
            ),
            models.UniqueConstraint(
                fields=["ranking", "response"],
                name="rankingentry_unique_response",
                violation_error_message="A response is ranked twice.",
            ),
            models.CheckConstraint(
                name="rankingentry_rank_positive",
                condition=Q(rank__gte=1),
                violation_error_message="Ranks start at 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.rank}: response {self.response_id}"


class SpanFeedback(models.Model):
    """A labelled part of a response: [start, end) in characters of the stored text."""

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="spans")
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="spans")
    label = models.ForeignKey(SpanLabel, on_delete=models.PROTECT, related_name="spans")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.MINOR)
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["response", "start", "end"]
        constraints = [
            models.CheckConstraint(
                name="spanfeedback_not_empty",
                condition=Q(end__gt=F("start")),
                violation_error_message="A span must end after it starts.",
            ),
            models.CheckConstraint(
                name="spanfeedback_severity_valid",
                condition=Q(severity__in=Severity.values),
                violation_error_message="Unknown severity.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label_id} [{self.start}, {self.end}) in response {self.response_id}"

    @property
    def quote(self) -> str:
        return self.response.text[self.start : self.end]

    def clean(self) -> None:
        task = self.submission.task
        if self.label.project_id != task.project_id:
            raise ValidationError({"label": f"{self.label.name} is not a label of this project."})
        if not task.links.filter(response_id=self.response_id).exists():
            raise ValidationError({"response": "The response is not part of this task."})
        length = len(self.response.text)
        if self.end > length:
            raise ValidationError(
                {"end": f"The span ends at {self.end}, past the response's {length} characters."}
            )


class FreeTextFeedback(models.Model):
    class Mode(models.TextChoices):
        CRITIQUE = "critique", "Critique"
        REWRITE = "rewrite", "Rewrite"
        RATIONALE = "rationale", "Rationale"

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="texts")
    response = models.ForeignKey(
        Response,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="free_texts",
        help_text="The response critiqued or rewritten; empty for a rationale of the task.",
    )
    mode = models.CharField(max_length=16, choices=Mode.choices)
    text = models.TextField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="freetextfeedback_mode_valid",
                condition=Q(mode__in=["critique", "rewrite", "rationale"]),
                violation_error_message="Unknown free-text mode.",
            ),
            models.CheckConstraint(
                name="freetextfeedback_text_not_blank",
                condition=~Q(text=""),
                violation_error_message="Free-text feedback needs text.",
            ),
            models.CheckConstraint(
                name="freetextfeedback_rewrite_names_response",
                condition=~Q(mode="rewrite") | Q(response__isnull=False),
                violation_error_message="A rewrite names the response it rewrites.",
            ),
            models.UniqueConstraint(
                fields=["submission", "response", "mode"],
                condition=Q(response__isnull=False),
                name="freetextfeedback_one_per_response_mode",
                violation_error_message="This response already has this kind of text.",
            ),
            models.UniqueConstraint(
                fields=["submission", "mode"],
                condition=Q(response__isnull=True),
                name="freetextfeedback_one_per_task_mode",
                violation_error_message="This task already has this kind of text.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mode} on submission {self.submission_id}"

    def clean(self) -> None:
        task = self.submission.task
        if self.mode not in task.project.free_text_modes:
            raise ValidationError({"mode": f"The project does not ask for a {self.mode}."})
        if self.response_id and not task.links.filter(response_id=self.response_id).exists():
            raise ValidationError({"response": "The response is not part of this task."})
        if not self.text.strip():
            raise ValidationError({"text": "Free-text feedback needs text."})


class JudgeOutput(models.Model):
    """What a judge model said for one call of a job, kept whether or not it parsed.

    One row per (job, task, kind, order): a rerun of the job finds the task attempted and
    does not ask again; `parse_error` explains output that could not be stored as feedback.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="judge_outputs")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="judge_outputs")
    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="outputs")
    kind = models.CharField(max_length=16, choices=FeedbackKind.choices)
    swapped = models.BooleanField(
        default=False, help_text="Pairwise only: asked with the responses in B, A order."
    )
    raw_output = models.TextField(blank=True)
    parsed = models.JSONField(null=True, blank=True)
    parse_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["judge", "kind"])]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "task", "kind", "swapped"],
                name="judgeoutput_one_per_job_call",
                violation_error_message="This job already asked the judge this.",
            ),
            models.CheckConstraint(
                name="judgeoutput_kind_valid",
                condition=Q(kind__in=FeedbackKind.values),
                violation_error_message="Unknown feedback kind.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} output of {self.judge_id} on task {self.task_id}"


class IdempotencyKey(models.Model):
    """The answer to a REST write sent with an `Idempotency-Key` header, kept for replay.

    A client retrying after a timeout cannot know whether its first request wrote; with
    the same key it gets the stored answer back instead of a second copy of its rows. The
    row is inserted in the transaction that writes, so a concurrent retry waits on the
    unique index until the first commits (then replays) or rolls back (then writes).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_keys"
    )
    key = models.CharField(max_length=255)
    endpoint = models.CharField(max_length=300, help_text="Method and path, e.g. POST /api/...")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the parsed body.")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "key"],
                name="idempotencykey_one_per_user_key",
                violation_error_message="This key was already used.",
            ),
        ]

    def __str__(self) -> str:
        return f"idempotency key {self.key!r} of user {self.user_id}"


class RewardModel(models.Model):
    """A reward model trained on a project's feedback, its weights under ARTIFACT_ROOT.

    The row says what it learnt from (`export_options`: the export queries that gave its
    training rows; `data_snapshot`: the newest submission read and counts per kind and
    source) and how well (`metrics` on the held-out split, `curve` per evaluation step).
    """

    class BackboneKind(models.TextChoices):
        SEQUENCE_CLASSIFICATION = "sequence-classification", "Sequence classification"
        EMBEDDING = "embedding", "Sentence embedding with a head"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="reward_models")
    name = models.CharField(max_length=200)
    backbone = models.CharField(max_length=500, help_text="Hub name or local path it started from.")
    backbone_kind = models.CharField(max_length=32, choices=BackboneKind.choices)
    parameters = models.JSONField(default=dict, blank=True, help_text="Training parameters.")
    export_options = models.JSONField(
        default=dict, blank=True, help_text="Export options per training shape."
    )
    data_snapshot = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Held-out evaluation.")
    curve = models.JSONField(default=list, blank=True, help_text="Learning curve points.")
    artifact_path = models.CharField(
        max_length=500, help_text="Directory of weights and tokenizer, under ARTIFACT_ROOT."
    )
    job = models.OneToOneField(
        Job,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reward_model",
        help_text="The job that trained it: a rerun of the job finds it made.",
    )
    is_active = models.BooleanField(
        default=False, help_text="Scores new responses and ranks candidates for the project."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(is_active=True),
                name="rewardmodel_one_active_per_project",
                violation_error_message="The project already has an active reward model.",
            ),
            models.CheckConstraint(
                name="rewardmodel_backbone_kind_valid",
                condition=Q(backbone_kind__in=["sequence-classification", "embedding"]),
                violation_error_message="Unknown backbone kind.",
            ),
            models.CheckConstraint(
                name="rewardmodel_artifact_path_relative",
                condition=~Q(artifact_path="") & ~Q(artifact_path__startswith="/"),
                violation_error_message="The artifact path is relative to ARTIFACT_ROOT.",
            ),
        ]

    def __str__(self) -> str:
        return f"reward model {self.name} ({self.pk})"

    @property
    def artifact_dir(self) -> Path:
        return Path(settings.ARTIFACT_ROOT) / self.artifact_path


class RewardEvaluation(models.Model):
    """A reward model's metrics on one project's feedback (its own or another's); the
    latest evaluation per (model, project) replaces the one before."""

    reward_model = models.ForeignKey(
        RewardModel, on_delete=models.CASCADE, related_name="evaluations"
    )
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="reward_evaluations"
    )
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL)
    export_options = models.JSONField(default=dict, blank=True)
    data_snapshot = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reward_model", "project"],
                name="rewardevaluation_one_per_project",
                violation_error_message="This model already has an evaluation on this project.",
            ),
        ]

    def __str__(self) -> str:
        return f"evaluation of {self.reward_model_id} on project {self.project_id}"


class ResponseScore(models.Model):
    """A reward model's score of one response."""

    # The unique index (reward_model, response) serves the reads: a model's scores of a
    # project's responses, and the responses it has not scored yet.
    reward_model = models.ForeignKey(
        RewardModel, on_delete=models.CASCADE, related_name="scores", db_index=False
    )
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="scores")
    score = models.FloatField()
    # Selectors that read the model's uncertainty (ensemble disagreement, Thompson
    # sampling) need every head; `score` is head 0, the one fitted on all labels.
    head_scores = models.JSONField(
        null=True, blank=True, help_text="Every head's score, when the model has more than one."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["reward_model", "response"],
                name="responsescore_one_per_model",
                violation_error_message="This model already scored this response.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.score:.3f} for response {self.response_id} by {self.reward_model_id}"


class Selector(models.TextChoices):
    """How a round chooses pairs (the functions of `worker.ml.selection`)."""

    RANDOM = "random", "Random"
    MARGIN = "margin", "Smallest reward margin"
    DISAGREEMENT = "disagreement", "Ensemble disagreement"
    THOMPSON = "thompson", "Double Thompson sampling"
    DISSIMILAR = "dissimilar", "Embedding-dissimilar"
    PROMPT = "prompt", "Prompts that need labels"


class LoopConfig(models.Model):
    """How a project's pairs are chosen, and whether the loop runs on its own.

    `pairs_by_selection`: pair tasks come only from selection rounds, so thousands of
    candidates do not make millions of tasks. `is_on`: a round starts by itself once
    `retrain_every` new pairwise labels from people came in since the last one.
    `reward_options`: the reward-training job's parameters (`RewardTrainParams`; each
    round's model is named after them and the round). With a `judge`, a selected pair it
    answers alike in both orders with at least `judge_min_strength` is settled by it, and
    `control_share` of those go to people as well.
    """

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="loop_config")
    is_on = models.BooleanField(default=False, help_text="Start rounds on new labels.")
    pairs_by_selection = models.BooleanField(
        default=False, help_text="Pair tasks come only from selection rounds."
    )
    selector = models.CharField(max_length=16, choices=Selector.choices, default=Selector.MARGIN)
    batch_size = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1), MaxValueValidator(10000)],
        help_text="Pairs picked per round.",
    )
    random_share = models.FloatField(
        default=0.25,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Share of each batch drawn at random, for unbiased evaluation.",
    )
    retrain_every = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1)],
        help_text="New pairwise labels from people that start the next round.",
    )
    max_pairs_per_prompt = models.PositiveIntegerField(
        default=50,
        validators=[MinValueValidator(1)],
        help_text="Candidate pairs drawn per prompt each round.",
    )
    reward_options = models.JSONField(
        default=dict, blank=True, help_text="Reward-training parameters; empty: no retraining."
    )
    judge = models.ForeignKey(
        Judge,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="loop_configs",
        help_text="Settles the pairs it is sure of; empty: every pair goes to people.",
    )
    judge_min_strength = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(3)],
        help_text="1 slightly, 2 clearly, 3 much better, in both orders.",
    )
    control_share = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Share of the judge's settled pairs also sent to people.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="loopconfig_selector_valid",
                condition=Q(selector__in=Selector.values),
                violation_error_message="Unknown selector.",
            ),
            models.CheckConstraint(
                name="loopconfig_batch_size_range",
                condition=Q(batch_size__gte=1, batch_size__lte=10000),
                violation_error_message="A batch holds 1 to 10,000 pairs.",
            ),
            models.CheckConstraint(
                name="loopconfig_random_share_range",
                condition=Q(random_share__gte=0, random_share__lte=1),
                violation_error_message="The random share is between 0 and 1.",
            ),
            models.CheckConstraint(
                name="loopconfig_retrain_every_positive",
                condition=Q(retrain_every__gte=1),
                violation_error_message="Retrain after at least one new label.",
            ),
            models.CheckConstraint(
                name="loopconfig_max_pairs_positive",
                condition=Q(max_pairs_per_prompt__gte=1),
                violation_error_message="Draw at least one candidate pair per prompt.",
            ),
            models.CheckConstraint(
                name="loopconfig_judge_strength_range",
                condition=Q(judge_min_strength__gte=1, judge_min_strength__lte=3),
                violation_error_message="The judge's strength is 1, 2 or 3.",
            ),
            models.CheckConstraint(
                name="loopconfig_control_share_range",
                condition=Q(control_share__gte=0, control_share__lte=1),
                violation_error_message="The control share is between 0 and 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"loop of {self.project} ({'on' if self.is_on else 'off'})"


class SelectionRound(models.Model):
    """One selection job: what it learnt from, which model and selector it used, what it
    picked and where the picks went (people, the judge, both).

    Rounds are numbered per project; the unique number is what makes the loop's trigger
    start a round once however many submissions see the threshold at the same time.
    """

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Started by an admin"
        LOOP_ON = "loop_on", "Loop turned on"
        LABELS = "labels", "New labels"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="selection_rounds")
    number = models.PositiveIntegerField()
    job = models.OneToOneField(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="selection_round"
    )
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    # Submission ids come from one sequence: labels with a larger id came after the round
    # started, and count toward the next one.
    submission_marker = models.PositiveBigIntegerField(
        default=0, help_text="The newest submission id when the round started."
    )
    people_labels = models.PositiveIntegerField(
        null=True, blank=True, help_text="Current pairwise labels from people when it ran."
    )
    judge_labels = models.PositiveIntegerField(
        null=True, blank=True, help_text="Current pairwise labels from judges when it ran."
    )
    reward_model = models.ForeignKey(
        RewardModel,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="selection_rounds",
        help_text="The model whose scores it read (trained in the round when `retrained`).",
    )
    retrained = models.BooleanField(default=False)
    held_out_accuracy = models.FloatField(null=True, blank=True)
    selector = models.CharField(max_length=16, choices=Selector.choices)
    selector_used = models.CharField(
        max_length=16, choices=Selector.choices, blank=True, help_text="After any fallback."
    )
    fallback = models.TextField(blank=True, help_text="Why another selector ran.")
    candidates = models.PositiveIntegerField(default=0, help_text="Pairs it chose from.")
    picked = models.PositiveIntegerField(default=0)
    created_tasks = models.PositiveIntegerField(default=0)
    reprioritised = models.PositiveIntegerField(default=0)
    to_people = models.PositiveIntegerField(default=0, help_text="Picks sent to people only.")
    judge_settled = models.PositiveIntegerField(default=0, help_text="Settled by the judge.")
    control = models.PositiveIntegerField(
        default=0, help_text="Settled by the judge and sent to people as a check."
    )
    judge = models.ForeignKey(
        Judge,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="selection_rounds",
        help_text="The judge asked to settle its picks.",
    )
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per stage.")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "number"],
                name="selectionround_one_per_number",
                violation_error_message="The project already has a round with this number.",
            ),
            models.CheckConstraint(
                name="selectionround_number_positive",
                condition=Q(number__gte=1),
                violation_error_message="Rounds are numbered from 1.",
            ),
            models.CheckConstraint(
                name="selectionround_trigger_valid",
                condition=Q(trigger__in=["manual", "loop_on", "labels"]),
                violation_error_message="Unknown trigger.",
            ),
            models.CheckConstraint(
                name="selectionround_routes_within_picks",
                condition=Q(picked__gte=F("to_people") + F("judge_settled") + F("control"))
                & Q(picked__gte=F("created_tasks") + F("reprioritised")),
                violation_error_message="A round routes no more pairs than it picked.",
            ),
        ]

    def __str__(self) -> str:
        return f"round {self.number} of {self.project}"


class PairSelection(models.Model):
    """A pair task a round picked: its place in the batch, the selector's score and reason,
    and where it went. While the judge is asked, and once it settled the pair, the task is
    not served to people (`HELD`)."""

    class Route(models.TextChoices):
        PEOPLE = "people", "People"
        JUDGE_PENDING = "judge_pending", "Waiting for the judge"
        JUDGE = "judge", "Settled by the judge"
        CONTROL = "control", "Settled by the judge, checked by people"

    HELD = (Route.JUDGE_PENDING, Route.JUDGE)

    round = models.ForeignKey(SelectionRound, on_delete=models.CASCADE, related_name="picks")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="selections")
    rank = models.PositiveIntegerField(help_text="0 is the batch's first pick.")
    selector = models.CharField(max_length=16, choices=Selector.choices)
    score = models.FloatField(help_text="The selector's score; higher was picked first.")
    reason = models.TextField(blank=True)
    route = models.CharField(max_length=16, choices=Route.choices, default=Route.PEOPLE)

    class Meta:
        ordering = ["round", "rank"]
        indexes = [
            # The queue leaves held tasks out with one probe of this small index per task.
            models.Index(
                fields=["task"],
                condition=Q(route__in=["judge_pending", "judge"]),
                name="pairselection_held_task",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["round", "task"],
                name="pairselection_once_per_round",
                violation_error_message="The round already picked this task.",
            ),
            models.UniqueConstraint(
                fields=["round", "rank"],
                name="pairselection_unique_rank",
                violation_error_message="Two picks share a rank.",
            ),
            models.CheckConstraint(
                name="pairselection_selector_valid",
                condition=Q(selector__in=Selector.values),
                violation_error_message="Unknown selector.",
            ),
            models.CheckConstraint(
                name="pairselection_route_valid",
                condition=Q(route__in=["people", "judge_pending", "judge", "control"]),
                violation_error_message="Unknown route.",
            ),
        ]

    def __str__(self) -> str:
        return f"pick {self.rank} of round {self.round_id}: task {self.task_id}"
