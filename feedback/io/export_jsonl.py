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
    block = bytearray()
    for row in rows:
        block += orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
        if len(block) >= BLOCK_BYTES:
            yield bytes(block)
            block.clear()
    if block:
        yield bytes(block)
