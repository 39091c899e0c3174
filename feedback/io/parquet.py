"""Parquet, in the column layout of a Hugging Face data set."""

from collections.abc import Iterator
from typing import BinaryIO

from feedback.services import RowError

BATCH_ROWS = 5000  # rows converted to Python at a time


def read_rows(file: BinaryIO) -> Iterator[tuple[int, dict] | RowError]:
    """(row number, row) per row, a record batch at a time."""
    # Imported here: pyarrow is large, and web workers rarely read Parquet.
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
        row_number = 0
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            for record in batch.to_pylist():
                row_number += 1
                yield row_number, _without_nulls(record)
    except (pa.ArrowException, OSError) as exc:
        yield RowError(0, "file", f"unreadable Parquet: {exc}", "row")


def _without_nulls(record: dict) -> dict:
    """Drop null columns and null struct fields, which Parquet adds for absent values."""
    row = {k: v for k, v in record.items() if v is not None}
    if isinstance(row.get("responses"), list):
        row["responses"] = [
            {k: v for k, v in r.items() if v is not None} if isinstance(r, dict) else r
            for r in row["responses"]
        ]
    return row
