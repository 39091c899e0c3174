"""JSON Lines export: one object a line, yielded in blocks of bytes as rows arrive."""

import json
from collections.abc import Iterable, Iterator
from typing import Any

MEDIA_TYPE = "application/jsonl"
BLOCK_BYTES = 256 * 1024

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def write_rows(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Encode rows as UTF-8 JSON lines; each yielded block is about BLOCK_BYTES."""
    lines: list[str] = []
    size = 0
    for row in rows:
        line = _encode(row)
        lines.append(line)
        size += len(line) + 1
        if size >= BLOCK_BYTES:
            yield ("\n".join(lines) + "\n").encode()
            lines, size = [], 0
    if lines:
        yield ("\n".join(lines) + "\n").encode()
