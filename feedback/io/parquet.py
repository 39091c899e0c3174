"""Parquet, in the column layout of a Hugging Face data set."""

from typing import BinaryIO

from feedback.services import ImportRejected, RowError


def read_rows(file: BinaryIO, name: str) -> list[tuple[int, dict]]:
    # Imported here: pyarrow is large, and web workers rarely read Parquet.
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError) as exc:
        raise ImportRejected(
            name, [RowError(0, "file", f"unreadable Parquet: {exc}", "row")]
        ) from exc
    return [
        (row_number, _without_nulls(record))
        for row_number, record in enumerate(table.to_pylist(), start=1)
    ]


def _without_nulls(record: dict) -> dict:
    """Drop null columns and null struct fields, which Parquet adds for absent values."""
    row = {k: v for k, v in record.items() if v is not None}
    if isinstance(row.get("responses"), list):
        row["responses"] = [
            {k: v for k, v in r.items() if v is not None} if isinstance(r, dict) else r
            for r in row["responses"]
        ]
    return row
