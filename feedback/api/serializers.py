"""Serializers translate: requests in, checked types out; models in, JSON out."""

from django.http import QueryDict
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from feedback.exports import Aggregate, Form, PairSource, Shape, Sources, Ties
from feedback.loop import LOOP_FIELDS
from feedback.models import (
    Job,
    LoopConfig,
    PairSelection,
    Project,
    Prompt,
    RatingAspect,
    Response,
    RewardEvaluation,
    RewardModel,
    SelectionRound,
    SpanLabel,
    Submission,
    Task,
)
from feedback.selectors import LEADERBOARD_MIN_VOTES


class JsonTypes:
    """In a JSON body a boolean or a number is one, as the schema says: DRF would also take
    "true", "yes" or "5" there (it reads forms the same way), hiding a client's bug."""

    def to_internal_value(self, data):
        if not isinstance(data, QueryDict):  # form bodies carry text, and stay as they were
            typed = {
                serializers.BooleanField: (bool, "Must be JSON true or false."),
                serializers.IntegerField: (int, "Must be a JSON integer."),
            }
            wrong = {
                name: [message]
                for name, field in self.fields.items()
                for kind, (python, message) in typed.items()
                if isinstance(field, kind) and name in data and type(data[name]) is not python
            }
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)


# --- Projects --------------------------------------------------------------------------


class AspectSerializer(serializers.ModelSerializer):
    class Meta:
        model = RatingAspect
        fields = ["id", "name", "rubric", "scale_min", "scale_max", "position"]


class SpanLabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = SpanLabel
        fields = ["id", "name", "description", "color", "default_severity", "position"]


PROJECT_CONFIG = [
    "name",
    "guidelines",
    "collects_pairwise",
    "collects_rating",
    "collects_ranking",
    "collects_spans",
    "collects_free_text",
    "asks_critique",
    "asks_rewrite",
    "asks_rationale",
    "ranking_size",
    "annotators_per_task",
    "lease_minutes",
    "show_judge_suggestions",
]


class ProjectSerializer(JsonTypes, serializers.ModelSerializer):
    """A project with its feedback configuration; aspects and labels are read-only here."""

    feedback_kinds = serializers.ListField(child=serializers.CharField(), read_only=True)
    aspects = AspectSerializer(many=True, read_only=True)
    span_labels = SpanLabelSerializer(many=True, read_only=True)

    class Meta:
        model = Project
        fields = ["id", *PROJECT_CONFIG, "feedback_kinds", "aspects", "span_labels", "created_at"]
        read_only_fields = ["id", "created_at"]

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            if isinstance(field, serializers.BooleanField):
                # DRF reads a boolean missing from a form body as false (an unticked box);
                # the API means what JSON means: not given, so the model's default.
                field.default_empty_html = serializers.empty
        return fields


# --- Prompts, responses, tasks ---------------------------------------------------------


class PromptSerializer(serializers.ModelSerializer):
    response_ids = serializers.SerializerMethodField()

    class Meta:
        model = Prompt
        fields = ["id", "external_id", "text", "messages", "metadata", "response_ids", "created_at"]

    def get_response_ids(self, prompt: Prompt) -> list[int]:
        return [response.pk for response in prompt.responses.all()]


class PromptImportSerializer(serializers.Serializer):
    """Rows as in a JSONL import file: `id`, `prompt` or `messages`, `responses`, `metadata`."""

    # Each row is checked by the import, which names the row of one that is not an object.
    rows = serializers.ListField(allow_empty=False)


class ImportResultSerializer(serializers.Serializer):
    prompts = serializers.IntegerField()
    responses = serializers.IntegerField()
    tasks = serializers.IntegerField()
    prompt_ids = serializers.ListField(child=serializers.IntegerField())


class ResponseSerializer(serializers.ModelSerializer):
    score = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="The reward model's score (the active one, or `?reward_model=`); null when "
        "it has not scored the response, the project has no active model, or for annotators.",
    )

    class Meta:
        model = Response
        fields = [
            "id",
            "prompt",
            "text",
            "model_name",
            "generation_params",
            "sample_index",
            "score",
            "created_at",
        ]


class ResponsesCreateSerializer(JsonTypes, serializers.Serializer):
    responses = serializers.ListField(child=serializers.DictField(), allow_empty=False)
    create_tasks = serializers.BooleanField(default=True)


class ResponsesResultSerializer(serializers.Serializer):
    responses = serializers.IntegerField()
    tasks = serializers.IntegerField()
    response_ids = serializers.ListField(child=serializers.IntegerField())


class TaskSerializer(serializers.ModelSerializer):
    response_ids = serializers.SerializerMethodField(help_text="In display order: A first.")

    class Meta:
        model = Task
        fields = ["id", "prompt", "layout", "priority", "response_ids", "created_at"]

    def get_response_ids(self, task: Task) -> list[int]:
        return [link.response_id for link in task.links.all()]


# --- Feedback --------------------------------------------------------------------------


class PairwiseOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    choice = serializers.CharField()
    strength = serializers.IntegerField(allow_null=True)


class RatingOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    response_id = serializers.IntegerField()
    aspect = serializers.CharField(source="aspect.name")
    value = serializers.IntegerField()
    rationale = serializers.CharField()


class SpanOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    response_id = serializers.IntegerField()
    label = serializers.CharField(source="label.name")
    severity = serializers.CharField()
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    comment = serializers.CharField()


class TextOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    response_id = serializers.IntegerField(allow_null=True)
    mode = serializers.CharField()
    text = serializers.CharField()


class FeedbackSerializer(serializers.ModelSerializer):
    """A submission: one annotator's or judge's answer to a task, with every record in it."""

    annotator = serializers.CharField(source="annotator.username", default=None, allow_null=True)
    judge = serializers.CharField(source="judge.name", default=None, allow_null=True)
    pairwise = serializers.SerializerMethodField()
    ratings = RatingOutSerializer(many=True, read_only=True)
    ranking = serializers.SerializerMethodField(help_text="Response ids, best first.")
    spans = SpanOutSerializer(many=True, read_only=True)
    texts = TextOutSerializer(many=True, read_only=True)

    class Meta:
        model = Submission
        fields = [
            "id",
            "task",
            "annotator",
            "judge",
            "created_at",
            "duration_ms",
            "is_current",
            "supersedes",
            "pairwise",
            "ratings",
            "ranking",
            "spans",
            "texts",
        ]

    @extend_schema_field(PairwiseOutSerializer(allow_null=True))
    def get_pairwise(self, submission: Submission) -> dict | None:
        record = getattr(submission, "pairwise", None)
        return PairwiseOutSerializer(record).data if record is not None else None

    def get_ranking(self, submission: Submission) -> list[int]:
        record = getattr(submission, "ranking", None)
        return [entry.response_id for entry in record.entries.all()] if record else []


# --- Exports and agreement -------------------------------------------------------------


class QueryParamsSerializer(serializers.Serializer):
    """Query parameters. DRF reads an empty value as an absent one (form semantics), so
    `?sources=` would quietly mean the default; here it is refused like any bad value."""

    def to_internal_value(self, data):
        empty = [
            name
            for name, field in self.fields.items()
            if data.get(name) == "" and not getattr(field, "allow_blank", False)
        ]
        if empty:
            raise serializers.ValidationError(
                {name: ["This field may not be empty."] for name in empty}
            )
        return super().to_internal_value(data)


class ExportParamsSerializer(QueryParamsSerializer):
    shape = serializers.ChoiceField(choices=[s.value for s in Shape], default=Shape.PAIRS.value)
    format = serializers.ChoiceField(choices=["jsonl", "parquet"], default="jsonl")
    form = serializers.ChoiceField(choices=[f.value for f in Form], default=Form.AUTO.value)
    aggregate = serializers.ChoiceField(
        choices=[a.value for a in Aggregate], default=Aggregate.NONE.value
    )
    ties = serializers.ChoiceField(
        choices=[t.value for t in Ties],
        default=Ties.DROP.value,
        help_text="keep_as_column adds a `tie` column for analysis: TRL has none, so a trainer "
        "would read each kept tie as chosen beating rejected.",
        error_messages={
            "invalid_choice": '"{input}" is not a choice: use drop to train, or keep_as_column '
            "for analysis (TRL has no tie column and would train each tie as a preference)."
        },
    )
    min_agreement = serializers.FloatField(default=0.0, min_value=0.0, max_value=1.0)
    pairs_from = serializers.ChoiceField(
        choices=[p.value for p in PairSource], default=PairSource.PAIRWISE.value
    )
    aspect = serializers.CharField(default="", allow_blank=True, max_length=100)
    margin = serializers.BooleanField(default=False)
    sources = serializers.ChoiceField(choices=[s.value for s in Sources], default=Sources.ALL.value)
    seed = serializers.IntegerField(
        default=0,
        min_value=0,
        max_value=2**32 - 1,
        help_text="Fixes the unpaired shape's shuffled row order.",
    )
    scores = serializers.RegexField(
        r"^(active|[1-9][0-9]{0,18})$",
        required=False,
        help_text="A reward model's id, or `active`: add its scores (`chosen_score`, "
        "`rejected_score` to pairs; `score` to unpaired and spans rows and to each rated "
        "completion; `scores` to rankings). Every response of the project must have one.",
        error_messages={"invalid": "A reward model's id or 'active'."},
    )


class AgreementParamsSerializer(QueryParamsSerializer):
    sources = serializers.ChoiceField(
        choices=[s.value for s in Sources], default=Sources.ANNOTATORS.value
    )


# --- Leaderboard -----------------------------------------------------------------------


class LeaderboardParamsSerializer(QueryParamsSerializer):
    sources = serializers.ChoiceField(choices=[s.value for s in Sources], default=Sources.ALL.value)
    category = serializers.RegexField(
        r"^[^:]+:",
        required=False,
        max_length=1000,
        trim_whitespace=False,
        help_text="key:value - only prompts whose metadata[key] is value (compared as text).",
        error_messages={"invalid": "Write the category as key:value."},
    )
    include_rankings = serializers.BooleanField(
        default=False, help_text="Also count each ranking as the pairwise outcomes it implies."
    )
    min_votes = serializers.IntegerField(
        default=LEADERBOARD_MIN_VOTES,
        min_value=0,
        max_value=2**31 - 1,
        help_text="Models with fewer comparisons are marked few_votes.",
    )
    resamples = serializers.IntegerField(
        default=1000, min_value=0, max_value=2000, help_text="Bootstrap resamples; 0: no intervals."
    )
    online_elo = serializers.BooleanField(
        default=False,
        help_text="Also replay the votes in time order as online Elo (K = 4); seconds for a"
        " million votes.",
    )
    format = serializers.ChoiceField(choices=["json", "csv"], default="json")

    def validate_category(self, value: str) -> tuple[str, str]:
        key, _, rest = value.partition(":")
        return key, rest


class ModelStandingSerializer(serializers.Serializer):
    model = serializers.CharField()
    rank = serializers.IntegerField()
    rating = serializers.FloatField(help_text="Bradley-Terry, Elo scale, mean 1000.")
    rating_low = serializers.FloatField(allow_null=True)
    rating_high = serializers.FloatField(allow_null=True)
    rank_low = serializers.IntegerField(allow_null=True)
    rank_high = serializers.IntegerField(allow_null=True)
    votes = serializers.IntegerField()
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    ties = serializers.IntegerField()
    win_rate = serializers.FloatField()
    style_rating = serializers.FloatField(allow_null=True)
    style_rank = serializers.IntegerField(allow_null=True)
    online_elo = serializers.FloatField(allow_null=True)
    few_votes = serializers.BooleanField()


class PairStandingSerializer(serializers.Serializer):
    model_a = serializers.CharField()
    model_b = serializers.CharField()
    votes = serializers.IntegerField()
    a_wins = serializers.IntegerField()
    b_wins = serializers.IntegerField()
    ties = serializers.IntegerField()
    a_win_rate = serializers.FloatField()


class StyleEffectSerializer(serializers.Serializer):
    feature = serializers.CharField()
    coefficient = serializers.FloatField(allow_null=True)
    standard_error = serializers.FloatField(allow_null=True)


class LeaderboardSerializer(serializers.Serializer):
    """The slice asked for, its totals, and the models best first."""

    sources = serializers.CharField()
    category = serializers.SerializerMethodField()
    include_rankings = serializers.BooleanField()
    min_votes = serializers.IntegerField()
    resamples = serializers.IntegerField()
    level = serializers.FloatField(help_text="Of the rating and rank intervals.")
    votes = serializers.IntegerField()
    prompts = serializers.IntegerField()
    first_decided = serializers.IntegerField(help_text="Pairwise votes that chose a side.")
    first_wins = serializers.IntegerField(help_text="Of those, won by the response shown first.")
    first_win_rate = serializers.FloatField(allow_null=True)
    models = ModelStandingSerializer(many=True)
    pairs = PairStandingSerializer(many=True)
    style = StyleEffectSerializer(many=True)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_category(self, board) -> str | None:
        return None if board.category is None else ":".join(board.category)


class ResponseScoresParamsSerializer(QueryParamsSerializer):
    reward_model = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text="Whose scores to show: a reward model of the project (default: the active one).",
    )


# --- Jobs and reward models ---------------------------------------------------------------


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "params",
            "done",
            "total",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]


class RewardEvaluationSerializer(serializers.ModelSerializer):
    class Meta:
        model = RewardEvaluation
        fields = ["project", "job", "export_options", "data_snapshot", "metrics", "created_at"]


class RewardModelSerializer(serializers.ModelSerializer):
    """A trained reward model: what it learnt from, how well, and its evaluations on the
    feedback of other projects (or later feedback of its own)."""

    evaluations = RewardEvaluationSerializer(many=True, read_only=True)

    class Meta:
        model = RewardModel
        fields = [
            "id",
            "name",
            "backbone",
            "backbone_kind",
            "is_active",
            "parameters",
            "export_options",
            "data_snapshot",
            "metrics",
            "curve",
            "evaluations",
            "job",
            "created_at",
        ]


# --- The loop and its rounds -------------------------------------------------------------


class LoopConfigSerializer(serializers.ModelSerializer):
    updated_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Null until the configuration is saved."
    )

    class Meta:
        model = LoopConfig
        fields = [*LOOP_FIELDS, "updated_at"]


class PairSelectionSerializer(serializers.ModelSerializer):
    response_ids = serializers.SerializerMethodField()

    class Meta:
        model = PairSelection
        fields = ["task", "response_ids", "rank", "selector", "score", "reason", "route"]

    def get_response_ids(self, pick: PairSelection) -> list[int]:
        """The pair in display order (A first)."""
        return [link.response_id for link in pick.task.links.all()]


class ControlSerializer(serializers.Serializer):
    tasks = serializers.IntegerField(help_text="Settled pairs also sent to people.")
    answered = serializers.IntegerField(help_text="Of those, answered by people so far.")
    answers = serializers.IntegerField()
    agreeing = serializers.IntegerField(help_text="People's answers that match the judge's.")
    agreement = serializers.FloatField(allow_null=True)


class SelectionRoundSerializer(serializers.ModelSerializer):
    """A round: what it learnt from, what it used and picked, where the picks went, and how
    people's answers on its control sample agree with the judge."""

    job = JobSerializer(read_only=True)
    control_agreement = serializers.SerializerMethodField()

    class Meta:
        model = SelectionRound
        fields = [
            "number",
            "trigger",
            "job",
            "submission_marker",
            "people_labels",
            "judge_labels",
            "reward_model",
            "retrained",
            "held_out_accuracy",
            "selector",
            "selector_used",
            "fallback",
            "candidates",
            "picked",
            "created_tasks",
            "reprioritised",
            "to_people",
            "judge",
            "judge_settled",
            "control",
            "control_agreement",
            "timings",
            "note",
            "created_at",
            "finished_at",
        ]

    @extend_schema_field(ControlSerializer)
    def get_control_agreement(self, selection_round: SelectionRound) -> dict:
        control = self.context["control"][selection_round.pk]
        return ControlSerializer(control).data


class SelectionRoundDetailSerializer(SelectionRoundSerializer):
    picks = PairSelectionSerializer(many=True, read_only=True)

    class Meta(SelectionRoundSerializer.Meta):
        fields = [*SelectionRoundSerializer.Meta.fields, "picks"]
