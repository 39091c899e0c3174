"""`Idempotency-Key` for REST writes (IETF draft-ietf-httpapi-idempotency-key-header, the
Stripe convention): a retry with the key gets the first answer back, marked
`Idempotent-Replayed: true`, instead of writing its rows again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.db import transaction
from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback import services

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def request_fingerprint(data: Any) -> str:
    """SHA-256 of the parsed body in a canonical form: key order and spacing do not count."""
    if isinstance(data, QueryDict):
        data = {key: data.getlist(key) for key in sorted(data)}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# For the schema: every endpoint that takes the header says so.
KEY_PARAMETER = OpenApiParameter(
    HEADER,
    # As the header is checked: some visible character, at most MAX_KEY_LENGTH in all.
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": r"\S"},
    location=OpenApiParameter.HEADER,
    required=False,
    description="A unique key per write (a UUID); a retry with it replays the first answer.",
)


def idempotent(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Make a DRF write handler replay its answer for a repeated `Idempotency-Key`.

    Without the header the handler runs as before. Only 2xx answers are kept: a refused
    or failed request leaves the key free, so the client can correct it and retry.
    """

    @wraps(handler)
    def wrapper(view: APIView, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            message = f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} characters."
            return Response(
                {"detail": message, "errors": {HEADER: [message]}},
                status=status.HTTP_400_BAD_REQUEST,
            )
        endpoint = f"{request.method} {request.path}"
        with transaction.atomic():
            try:
                record, created = services.idempotency_key_take(
                    user=request.user,
                    key=key,
                    endpoint=endpoint,
                    fingerprint=request_fingerprint(request.data),
                )
            except services.IdempotencyKeyReused as exc:
                return Response(
                    {"detail": exc.message, "errors": exc.errors},
                    status=status.HTTP_422_UNPROCESSABLE_ENTITY,
                )
            if not created:
                return Response(
                    record.response_body,
                    status=record.response_status,
                    headers={"Idempotent-Replayed": "true"},
                )
            response = handler(view, request, *args, **kwargs)
            if status.is_success(response.status_code):
                services.idempotency_key_finish(
                    record=record, status=response.status_code, body=response.data
                )
            else:
                transaction.set_rollback(True)
        return response

    return wrapper
