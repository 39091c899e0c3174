"""JSON that PostgreSQL can store: text and jsonb refuse the NUL character."""

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from feedback.schemas import NUL_MESSAGE, nul_path


class JSONWithoutNulParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if where := nul_path(data):
            raise ParseError(f"{where}: {NUL_MESSAGE}.")
        return data
