"""One place that turns refused writes into 400 answers naming each bad field, and bodies
over the limit into 413 answers naming the limit."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from feedback.api.parsers import BodyTooLarge
from feedback.services import FeedbackError


def too_large(limit: int) -> Response:
    return Response(
        {
            "detail": f"The request body is over the limit of {limit} bytes "
            f"({limit / 2**20:.1f} MiB).",
            "limit_bytes": limit,
        },
        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, FeedbackError):
        return Response(
            {"detail": exc.message, "errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, DjangoValidationError):
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        return Response(
            {"detail": "The request was refused.", "errors": errors},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, BodyTooLarge):
        return too_large(exc.limit)
    if isinstance(exc, RequestDataTooBig):  # Django's limit, for every other endpoint
        return too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    return drf_exception_handler(exc, context)
