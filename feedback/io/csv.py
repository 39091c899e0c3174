"""CSV: one prompt a row; responses in `response_1`, `model_1`, `response_2`, ... columns.

`messages`, `metadata` and `responses` may also hold JSON text, for rows that need it.
"""

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import BinaryIO

from feedback.schemas import DEPTH_MESSAGE
from feedback.services import RowError

RESPONSE_COLUMN = re.compile(r"^(response|model)_(\d+)$")
JSON_COLUMNS = ("messages", "metadata", "responses")


def read_rows(file: BinaryIO) -> Iterator[tuple[int, dict] | RowError]:
    """(line number, row) per record, read as the import consumes them; a RowError for a
    bad value, and one for the file where it stops being CSV."""
    text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    reader = csv.DictReader(text)
    try:
        for record in reader:
            line = reader.line_num
            if None in record:
                yield RowError(line, "row", "more values than header columns")
                continue
            row, row_errors = _row(line, record)
            yield from row_errors
            if not row_errors:
                yield line, row
    except (UnicodeDecodeError, csv.Error) as exc:
        yield RowError(0, "file", f"unreadable CSV: {exc}")


def _row(line: int, record: dict[str, str]) -> tuple[dict, list[RowError]]:
    row: dict = {}
    errors: list[RowError] = []
    numbered: dict[int, dict[str, str]] = {}
    for column, value in record.items():
        if value is None or value == "":
            continue
        match = RESPONSE_COLUMN.match(column)
        if match:
            numbered.setdefault(int(match[2]), {})[match[1]] = value
        elif column in JSON_COLUMNS:
            try:
                row[column] = json.loads(value)
            except json.JSONDecodeError as exc:
                errors.append(RowError(line, column, f"invalid JSON: {exc.msg}"))
            except RecursionError:
                errors.append(RowError(line, column, DEPTH_MESSAGE))
        else:
            row[column] = value
    if numbered:
        responses = row.setdefault("responses", [])
        for index in sorted(numbered):
            parts = numbered[index]
            if "response" not in parts:
                errors.append(RowError(line, f"response_{index}", "model given without response"))
                continue
            responses.append({"text": parts["response"], "model": parts.get("model", "")})
    return row, errors
