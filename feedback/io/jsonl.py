"""JSON Lines: one JSON object per line, as `datasets` writes them."""

from collections.abc import Iterator
from typing import BinaryIO

import orjson

from feedback.schemas import DEPTH_MESSAGE, json_text_too_deep
from feedback.services import RowError


def read_rows(file: BinaryIO) -> Iterator[tuple[int, dict] | RowError]:
    """(line number, row) per line, read as the import consumes them; a RowError for a
    line that is not a JSON object."""
    for line_number, raw_line in enumerate(file, start=1):
        try:
            line = raw_line.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            yield RowError(line_number, "line", f"not UTF-8 ({exc.reason})")
            continue
        if not line:
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            # orjson stops at 1024 levels; the text tells where our 100 were passed.
            if where := json_text_too_deep(line):
                yield RowError(line_number, where, DEPTH_MESSAGE)
            else:
                message = f"invalid JSON: {exc.msg} at column {exc.colno}"
                yield RowError(line_number, "line", message)
            continue
        if not isinstance(value, dict):
            yield RowError(line_number, "line", "each line must be a JSON object")
            continue
        yield line_number, {k: v for k, v in value.items() if v is not None}
