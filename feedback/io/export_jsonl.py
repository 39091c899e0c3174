"""JSON Lines export: one object a line, yielded in blocks of bytes as rows arrive.

orjson, because encoding is most of the export's time with the standard library's json.
"""

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

MEDIA_TYPE = "application/jsonl"
BLOCK_BYTES = 256 * 1024


def write_rows(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Encode rows as UTF-8 JSON lines; each yielded block is about BLOCK_BYTES."""
    lines: list[bytes] = []
    size = 0
    for row in rows:
        line = orjson.dumps(row)
        lines.append(line)
        size += len(line) + 1
        if size >= BLOCK_BYTES:
            lines.append(b"")
            yield b"\n".join(lines)
            lines, size = [], 0
    if lines:
        lines.append(b"")
        yield b"\n".join(lines)
