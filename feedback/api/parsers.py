"""JSON that PostgreSQL can store (text and jsonb refuse NUL) and Python can walk (no deep
nesting), read within the body limits."""

import io
from typing import Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, JSONParser

from feedback.schemas import DEPTH_MESSAGE, json_problem, json_text_too_deep


class BodyTooLarge(Exception):
    """A request body over `limit` bytes; the exception handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is over the limit of {limit} bytes.")
        self.limit = limit


class JSONWithoutNulParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        body = stream.read()
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            where = json_text_too_deep(body.decode("utf-8", "replace")) or "body"
            raise ParseError(f"{where}: {DEPTH_MESSAGE}.") from None
        if problem := json_problem(data):
            raise ParseError(f"{problem[0]}: {problem[1]}.")
        return data


class BulkJSONParser(BaseParser):
    """JSON up to settings.API_IMPORT_MAX_BYTES, for the bulk import endpoints.

    Not a JSONParser: DRF reads those through `request.body`, which stops at Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), a quarter of a 10,000-row import.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = settings.API_IMPORT_MAX_BYTES
        meta = parser_context["request"].META
        if int(meta.get("CONTENT_LENGTH") or 0) > limit:
            raise BodyTooLarge(limit)
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise BodyTooLarge(limit)
        # orjson: a 10 MB body parses in a third of json's time. It stops at 1024 levels,
        # past ours, and refuses NaN and Infinity, which jsonb cannot store either.
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if where := json_text_too_deep(body.decode("utf-8", "replace")):
                raise ParseError(f"{where}: {DEPTH_MESSAGE}.") from None
            raise ParseError(f"JSON parse error - {exc}") from None
        if problem := json_problem(data):
            raise ParseError(f"{problem[0]}: {problem[1]}.")
        return data
