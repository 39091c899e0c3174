"""REST API views: parse, call a service or selector, render. Nothing else."""

import logging
from collections.abc import Iterator
from dataclasses import asdict

from django.http import StreamingHttpResponse
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback import selectors, services
from feedback.api import serializers as s
from feedback.api.filters import FeedbackFilter, PromptFilter, ResponseFilter, TaskFilter
from feedback.api.idempotency import KEY_PARAMETER, idempotent
from feedback.api.openapi import PromptImportBody, ResponsesCreateBody
from feedback.api.parsers import BulkJSONParser
from feedback.api.permissions import (
    IsProjectMember,
    IsProjectReader,
    IsStaff,
    project_and_role,
)
from feedback.dashboard import project_dashboard
from feedback.exports import ExportOptions, export_rows
from feedback.io import export_jsonl, export_parquet
from feedback.judges import judge_quality, judges_of_project, people_position_wins
from feedback.models import Project

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


class ResponseListApi(ProjectScoped, generics.ListAPIView):
    """Candidate responses; POST adds many (10,000 and more) in one transaction."""

    serializer_class = s.ResponseSerializer
    parser_classes = [BulkJSONParser]
    permission_classes = [IsProjectMember]
    filterset_class = ResponseFilter

    def project_queryset(self):
        return selectors.project_responses(self.project)

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


class ResponseDetailApi(ProjectScoped, generics.RetrieveAPIView):
    serializer_class = s.ResponseSerializer
    permission_classes = [IsProjectMember]
    lookup_url_kwarg = "response_id"

    def project_queryset(self):
        return selectors.project_responses(self.project)


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
    """Model ratings from the project's pairwise judgments."""

    permission_classes = [IsProjectReader]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, project_id: int) -> Response:
        return Response({"project": self.project.pk, "models": []})
