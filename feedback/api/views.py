"""REST API views: parse, call a service or selector, render. Nothing else."""

import logging
from collections.abc import Iterator
from dataclasses import asdict
from functools import cached_property

from django.db.models import Prefetch
from django.http import HttpResponse, StreamingHttpResponse
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback import loop, rewards, selectors, services
from feedback.api import serializers as s
from feedback.api.filters import FeedbackFilter, PromptFilter, ResponseFilter, TaskFilter
from feedback.api.idempotency import KEY_PARAMETER, idempotent
from feedback.api.openapi import (
    LoopConfigBody,
    PromptImportBody,
    ResponsesCreateBody,
    RewardEvaluateBody,
    RoundStartBody,
    ScoreBody,
)
from feedback.api.parsers import BulkJSONParser, JSONWithoutNulParser
from feedback.api.permissions import (
    ADMIN,
    IsProjectAdmin,
    IsProjectMember,
    IsProjectReader,
    IsStaff,
    project_and_role,
)
from feedback.dashboard import project_dashboard
from feedback.exports import ExportOptions, export_rows
from feedback.io import export_jsonl, export_parquet, leaderboard_csv
from feedback.jobs import RewardTrainParams, job_start, params_parse
from feedback.judges import judge_quality, judges_of_project, people_position_wins
from feedback.models import Job, PairSelection, Project, RewardModel, SelectionRound

WRITERS = {"jsonl": export_jsonl, "parquet": export_parquet}

logger = logging.getLogger(__name__)


def _logged(blocks: Iterator[bytes], name: str) -> Iterator[bytes]:
    """Log a failure after the first byte, then let it end the response.

    The status line has gone out by then; raising makes the server drop the connection
    before the chunked body's last chunk, so the client sees a broken download instead of
    a file that merely looks short.
    """
    try:
        yield from blocks
    except Exception:
        logger.exception("export %s broke off after the response started", name)
        raise


class ProjectScoped:
    """Views under /api/projects/<project_id>/: the project and the caller's role."""

    @property
    def project(self) -> Project:
        return project_and_role(self.request, self)[0]

    @property
    def role(self) -> str:
        return project_and_role(self.request, self)[1]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no project
            return self.serializer_class.Meta.model.objects.none()
        return self.project_queryset()


# --- Projects --------------------------------------------------------------------------


class ProjectListApi(generics.ListAPIView):
    """Projects the caller belongs to; staff create new ones (and become their admin)."""

    serializer_class = s.ProjectSerializer
    permission_classes = [IsStaff]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Project.objects.none()
        return selectors.projects_for_user(self.request.user).prefetch_related(
            "aspects", "span_labels"
        )

    @extend_schema(
        request=s.ProjectSerializer,
        responses={201: s.ProjectSerializer},
        parameters=[KEY_PARAMETER],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = s.ProjectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = services.project_create(creator=request.user, **serializer.validated_data)
        return Response(s.ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(ProjectScoped, APIView):
    permission_classes = [IsProjectMember]

    @extend_schema(responses=s.ProjectSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        return Response(s.ProjectSerializer(self.project).data)

    @extend_schema(request=s.ProjectSerializer, responses=s.ProjectSerializer)
    def patch(self, request: Request, project_id: int) -> Response:
        serializer = s.ProjectSerializer(self.project, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        project = services.project_update(project=self.project, **serializer.validated_data)
        return Response(s.ProjectSerializer(project).data)


# --- Prompts, responses, tasks ---------------------------------------------------------


class PromptListApi(ProjectScoped, generics.ListAPIView):
    """Prompts with their response ids; POST imports rows as the file import does."""

    serializer_class = s.PromptSerializer
    parser_classes = [BulkJSONParser]
    permission_classes = [IsProjectMember]
    filterset_class = PromptFilter

    def project_queryset(self):
        return selectors.project_prompts(self.project)

    @extend_schema(
        request=PromptImportBody,
        responses={201: s.ImportResultSerializer},
        parameters=[KEY_PARAMETER],
    )
    @idempotent
    def post(self, request: Request, project_id: int) -> Response:
        serializer = s.PromptImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rows = enumerate(serializer.validated_data["rows"], start=1)
        result = services.prompts_import(
            project=self.project, rows=rows, source="request", unit="row"
        )
        return Response(s.ImportResultSerializer(result).data, status=status.HTTP_201_CREATED)


class PromptDetailApi(ProjectScoped, generics.RetrieveAPIView):
    serializer_class = s.PromptSerializer
    permission_classes = [IsProjectMember]
    lookup_url_kwarg = "prompt_id"

    def project_queryset(self):
        return selectors.project_prompts(self.project)


class ScoredResponses(ProjectScoped):
    """Responses with a reward model's score: `?reward_model=`, else the active model's.
    Annotators get none: a score beside a response would steer their judgment."""

    def project_queryset(self):
        responses = selectors.project_responses(self.project)
        if self.role not in selectors.REPORT_ROLES:
            return rewards.responses_with_score(responses, None)
        params = s.ResponseScoresParamsSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        if "reward_model" in params.validated_data:
            model_id = params.validated_data["reward_model"]
            rewards.project_reward_model(self.project, model_id)  # refuses another's
        else:
            active = rewards.active_reward_model(self.project)
            model_id = active.pk if active is not None else None
        return rewards.responses_with_score(responses, model_id)


SCORE_PARAMETERS = extend_schema(parameters=[s.ResponseScoresParamsSerializer])


@extend_schema_view(get=SCORE_PARAMETERS)
class ResponseListApi(ScoredResponses, generics.ListAPIView):
    """Candidate responses with their scores; POST adds many (10,000 and more) in one
    transaction."""

    serializer_class = s.ResponseSerializer
    parser_classes = [BulkJSONParser]
    permission_classes = [IsProjectMember]
    filterset_class = ResponseFilter

    @extend_schema(
        request=ResponsesCreateBody,
        responses={201: s.ResponsesResultSerializer},
        parameters=[KEY_PARAMETER],
    )
    @idempotent
    def post(self, request: Request, project_id: int) -> Response:
        serializer = s.ResponsesCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.responses_bulk_create(
            project=self.project,
            rows=enumerate(serializer.validated_data["responses"], start=1),
            create_tasks=serializer.validated_data["create_tasks"],
        )
        return Response(s.ResponsesResultSerializer(result).data, status=status.HTTP_201_CREATED)


@extend_schema_view(get=SCORE_PARAMETERS)
class ResponseDetailApi(ScoredResponses, generics.RetrieveAPIView):
    serializer_class = s.ResponseSerializer
    permission_classes = [IsProjectMember]
    lookup_url_kwarg = "response_id"


class TaskListApi(ProjectScoped, generics.ListAPIView):
    serializer_class = s.TaskSerializer
    permission_classes = [IsProjectMember]
    filterset_class = TaskFilter

    def project_queryset(self):
        return selectors.project_tasks(self.project)


class TaskDetailApi(ProjectScoped, generics.RetrieveAPIView):
    serializer_class = s.TaskSerializer
    permission_classes = [IsProjectMember]
    lookup_url_kwarg = "task_id"

    def project_queryset(self):
        return selectors.project_tasks(self.project)


# --- Feedback --------------------------------------------------------------------------


class FeedbackListApi(ProjectScoped, generics.ListAPIView):
    """Submissions with their records of every kind; annotators see only their own."""

    serializer_class = s.FeedbackSerializer
    permission_classes = [IsProjectMember]
    filterset_class = FeedbackFilter

    def project_queryset(self):
        return selectors.project_feedback(self.project, self.request.user, self.role)


class FeedbackDetailApi(ProjectScoped, generics.RetrieveAPIView):
    serializer_class = s.FeedbackSerializer
    permission_classes = [IsProjectMember]
    lookup_url_kwarg = "submission_id"

    def project_queryset(self):
        return selectors.project_feedback(self.project, self.request.user, self.role)


# --- Export, agreement, consistency ----------------------------------------------------


class StreamNegotiation(BaseContentNegotiation):
    """The export picks its own media type; `?format=` names the file format, not a
    renderer, and errors render as JSON whatever the Accept header says."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ProjectExportApi(ProjectScoped, APIView):
    """A data set, streamed: JSON Lines or Parquet, in the shape a trainer reads."""

    permission_classes = [IsProjectReader]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = StreamNegotiation

    @extend_schema(
        parameters=[s.ExportParamsSerializer],
        responses={
            (200, export_jsonl.MEDIA_TYPE): OpenApiTypes.BINARY,
            (200, export_parquet.MEDIA_TYPE): OpenApiTypes.BINARY,
            400: OpenApiResponse(description="Options that the project cannot satisfy."),
        },
    )
    def get(self, request: Request, project_id: int) -> StreamingHttpResponse:
        params = s.ExportParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        options = dict(params.validated_data)
        writer = WRITERS[options.pop("format")]
        if "scores" in options:
            options["scores"] = rewards.scoring_model_resolve(self.project, options["scores"]).pk
        rows = export_rows(project=self.project, options=ExportOptions(**options))
        extension = "jsonl" if writer is export_jsonl else "parquet"
        name = f"{slugify(self.project.name) or 'project'}-{options['shape']}.{extension}"
        response = StreamingHttpResponse(
            _logged(writer.write_rows(rows), name), content_type=writer.MEDIA_TYPE
        )
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class ProjectAgreementApi(ProjectScoped, APIView):
    """Cohen's/Fleiss' kappa, Krippendorff's alpha, Kendall's tau, span F1; per rater."""

    permission_classes = [IsProjectReader]

    @extend_schema(parameters=[s.AgreementParamsSerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, project_id: int) -> Response:
        params = s.AgreementParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(selectors.project_agreement(project=self.project, **params.validated_data))


class ProjectConsistencyApi(ProjectScoped, APIView):
    """How often ratings contradict pairwise choices on the same two responses."""

    permission_classes = [IsProjectReader]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, project_id: int) -> Response:
        return Response(selectors.project_consistency(project=self.project))


class ProjectDashboardApi(ProjectScoped, APIView):
    """The dashboard's figures: queue and annotator progress, answers per hour, time per
    task (agreement and judge quality have their own endpoints)."""

    permission_classes = [IsProjectReader]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, project_id: int) -> Response:
        return Response(asdict(project_dashboard(project=self.project)))


class JudgeQualityApi(ProjectScoped, APIView):
    """Each judge's agreement with people, position consistency and length bias."""

    permission_classes = [IsProjectReader]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, project_id: int) -> Response:
        reports = [
            judge_quality(project=self.project, judge=judge)
            for judge in judges_of_project(self.project)
        ]
        return Response(
            {
                "project": self.project.pk,
                "people_first_position_wins": asdict(people_position_wins(project=self.project)),
                "judges": [asdict(r) for r in reports],
            }
        )


class LeaderboardApi(ProjectScoped, APIView):
    """Bradley-Terry ratings of the models with bootstrap intervals, style control, online
    Elo and head-to-head records; `format=csv` downloads the table."""

    permission_classes = [IsProjectReader]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = StreamNegotiation

    @extend_schema(
        parameters=[s.LeaderboardParamsSerializer],
        responses={
            (200, "application/json"): s.LeaderboardSerializer,
            (200, leaderboard_csv.MEDIA_TYPE): OpenApiTypes.STR,
        },
    )
    def get(self, request: Request, project_id: int) -> Response | HttpResponse:
        params = s.LeaderboardParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        options = dict(params.validated_data)
        as_csv = options.pop("format") == "csv"
        board = selectors.project_leaderboard(project=self.project, **options)
        if not as_csv:
            return Response(s.LeaderboardSerializer(board).data)
        response = HttpResponse(
            leaderboard_csv.write_leaderboard(board), content_type=leaderboard_csv.MEDIA_TYPE
        )
        name = f"{slugify(self.project.name) or 'project'}-leaderboard.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


# --- Jobs and reward models --------------------------------------------------------------


def _started(job: Job) -> Response:
    return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobDetailApi(ProjectScoped, generics.RetrieveAPIView):
    """A background job of the project: poll it until it succeeded or failed."""

    serializer_class = s.JobSerializer
    permission_classes = [IsProjectReader]
    lookup_url_kwarg = "job_id"

    def project_queryset(self):
        return Job.objects.filter(project=self.project)


class RewardModelListApi(ProjectScoped, generics.ListAPIView):
    """The project's reward models with their metrics and learning curves; POST starts a
    training job (202: poll the job; the model is listed once it succeeded)."""

    serializer_class = s.RewardModelSerializer
    permission_classes = [IsProjectReader]
    parser_classes = [JSONWithoutNulParser]

    def project_queryset(self):
        return rewards.project_reward_models(self.project, self.request.user)

    @extend_schema(
        request=RewardTrainParams, responses={202: s.JobSerializer}, parameters=[KEY_PARAMETER]
    )
    @idempotent
    def post(self, request: Request, project_id: int) -> Response:
        params = params_parse(RewardTrainParams, request.data, strict=True)
        job = job_start(
            project=self.project,
            kind=Job.Kind.TRAIN_REWARD,
            params=params.model_dump(mode="json"),
            created_by=request.user,
        )
        return _started(job)


class RewardModelScoped(ProjectScoped):
    """Views under /api/projects/<project_id>/reward-models/<reward_model_id>/."""

    @cached_property
    def reward_model(self) -> RewardModel:
        return generics.get_object_or_404(
            rewards.project_reward_models(self.project, self.request.user),
            pk=self.kwargs["reward_model_id"],
        )


class RewardModelDetailApi(RewardModelScoped, APIView):
    permission_classes = [IsProjectReader]

    @extend_schema(responses=s.RewardModelSerializer)
    def get(self, request: Request, project_id: int, reward_model_id: int) -> Response:
        return Response(s.RewardModelSerializer(self.reward_model).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, project_id: int, reward_model_id: int) -> Response:
        """Delete the model, its scores and evaluations, and its files."""
        rewards.reward_model_delete(reward_model=self.reward_model)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RewardModelActivateApi(RewardModelScoped, APIView):
    """Make it the project's active model (the one before stops being); the responses it
    has not scored are scored by a job."""

    permission_classes = [IsProjectReader]

    @extend_schema(request=None, responses=s.RewardModelSerializer)
    def post(self, request: Request, project_id: int, reward_model_id: int) -> Response:
        model = rewards.reward_model_activate(reward_model=self.reward_model)
        return Response(s.RewardModelSerializer(model).data)


class RewardModelScoreApi(RewardModelScoped, APIView):
    """Start a job that scores the project's responses with this model."""

    permission_classes = [IsProjectReader]
    parser_classes = [JSONWithoutNulParser]

    @extend_schema(request=ScoreBody, responses={202: s.JobSerializer}, parameters=[KEY_PARAMETER])
    @idempotent
    def post(self, request: Request, project_id: int, reward_model_id: int) -> Response:
        body = params_parse(ScoreBody, request.data, strict=True)
        job = job_start(
            project=self.project,
            kind=Job.Kind.SCORE,
            params={"reward_model_id": self.reward_model.pk, **body.model_dump()},
            created_by=request.user,
        )
        return _started(job)


class RewardModelEvaluateApi(RewardModelScoped, APIView):
    """Start a job that evaluates this model on a project's feedback: this one, or another
    that the caller administers (the job and its evaluation belong to that project)."""

    permission_classes = [IsProjectReader]
    parser_classes = [JSONWithoutNulParser]

    @extend_schema(
        request=RewardEvaluateBody, responses={202: s.JobSerializer}, parameters=[KEY_PARAMETER]
    )
    @idempotent
    def post(self, request: Request, project_id: int, reward_model_id: int) -> Response:
        body = params_parse(RewardEvaluateBody, request.data, strict=True)
        target = self.project
        if body.project is not None and body.project != self.project.pk:
            target = Project.objects.filter(pk=body.project).first()
            if target is None or selectors.member_role(request.user, target) != ADMIN:
                raise services.FeedbackError(
                    "Unknown project.",
                    errors={"project": [f"No project {body.project} that you administer."]},
                )
        data = body.data.model_dump(mode="json") if body.data is not None else None
        job = job_start(
            project=target,
            kind=Job.Kind.EVALUATE_REWARD,
            params={"reward_model_id": self.reward_model.pk, "data": data},
            created_by=request.user,
        )
        return _started(job)


# --- The loop ---------------------------------------------------------------------------


class LoopConfigApi(ProjectScoped, APIView):
    """The project's active-learning loop: selector, batch, retraining rule, reward model
    and judge settling. PATCH changes the fields sent; turning the loop on starts its
    first round. Admins only."""

    permission_classes = [IsProjectAdmin]
    parser_classes = [JSONWithoutNulParser]

    @extend_schema(responses=s.LoopConfigSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        return Response(s.LoopConfigSerializer(loop.loop_config(self.project)).data)

    @extend_schema(request=LoopConfigBody, responses=s.LoopConfigSerializer)
    def patch(self, request: Request, project_id: int) -> Response:
        try:
            body = params_parse(LoopConfigBody, request.data, strict=True)
        except services.FeedbackError as exc:
            raise services.FeedbackError(
                "The loop configuration was refused.", errors=exc.errors
            ) from exc
        config = loop.loop_config_save(
            project=self.project,
            changes=body.model_dump(mode="json", exclude_unset=True),
            user=request.user,
        )
        return Response(s.LoopConfigSerializer(config).data)


def _round_data(selection_round: SelectionRound, serializer=s.SelectionRoundSerializer) -> dict:
    control = loop.control_agreement([selection_round])
    return serializer(selection_round, context={"control": control}).data


class RoundListApi(ProjectScoped, generics.ListAPIView):
    """The project's selection rounds: labels so far, the model's held-out accuracy, the
    selector used and why, the picks' routes (people, judge, control) and the judge's
    agreement with people on the control sample. POST starts a round now with the loop's
    configuration (202: follow its job)."""

    serializer_class = s.SelectionRoundSerializer
    permission_classes = [IsProjectReader]
    parser_classes = [JSONWithoutNulParser]

    def project_queryset(self):
        return loop.project_rounds(self.project)

    def list(self, request: Request, *args, **kwargs) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        context = {**self.get_serializer_context(), "control": loop.control_agreement(page)}
        data = s.SelectionRoundSerializer(page, many=True, context=context).data
        return self.get_paginated_response(data)

    @extend_schema(
        request=RoundStartBody,
        responses={202: s.SelectionRoundSerializer},
        parameters=[KEY_PARAMETER],
    )
    @idempotent
    def post(self, request: Request, project_id: int) -> Response:
        params_parse(RoundStartBody, request.data, strict=True)
        selection_round = loop.round_start(
            project=self.project,
            trigger=SelectionRound.Trigger.MANUAL,
            created_by=request.user,
        )
        return Response(_round_data(selection_round), status=status.HTTP_202_ACCEPTED)


class RoundDetailApi(ProjectScoped, generics.RetrieveAPIView):
    """One round with its picks, best first: each pair task, the selector's score and
    reason, and where it went."""

    serializer_class = s.SelectionRoundDetailSerializer
    permission_classes = [IsProjectReader]
    lookup_field = "number"
    lookup_url_kwarg = "number"

    def project_queryset(self):
        picks = PairSelection.objects.prefetch_related("task__links").order_by("rank")
        return loop.project_rounds(self.project).prefetch_related(Prefetch("picks", picks))

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return Response(_round_data(self.get_object(), s.SelectionRoundDetailSerializer))
