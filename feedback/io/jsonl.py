"""JSON Lines: one JSON object per line, as `datasets` writes them."""

import json
from typing import BinaryIO

from feedback.schemas import DEPTH_MESSAGE, json_text_too_deep
from feedback.services import ImportRejected, RowError


def read_rows(file: BinaryIO, name: str) -> list[tuple[int, dict]]:
    rows: list[tuple[int, dict]] = []
    errors: list[RowError] = []
    for line_number, raw_line in enumerate(file, start=1):
        try:
            line = raw_line.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            errors.append(RowError(line_number, "line", f"not UTF-8 ({exc.reason})"))
            continue
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(
                RowError(line_number, "line", f"invalid JSON: {exc.msg} at column {exc.colno}")
            )
            continue
        except RecursionError:
            where = json_text_too_deep(line) or "line"
            errors.append(RowError(line_number, where, DEPTH_MESSAGE))
            continue
        if not isinstance(value, dict):
            errors.append(RowError(line_number, "line", "each line must be a JSON object"))
            continue
        rows.append((line_number, {k: v for k, v in value.items() if v is not None}))
    if errors:
        raise ImportRejected(name, errors)
    return rows
