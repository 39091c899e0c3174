"""Readers and writers of data-set files, one module per format."""

from pathlib import Path
from typing import BinaryIO

from feedback.io import csv, jsonl, parquet
from feedback.models import Project
from feedback.services import ImportRejected, ImportResult, RowError, prompts_import

# extension -> (reader, what its numbers count)
READERS = {
    ".jsonl": (jsonl.read_rows, "line"),
    ".csv": (csv.read_rows, "line"),
    ".parquet": (parquet.read_rows, "row"),
}


def prompts_import_file(*, project: Project, file: BinaryIO, name: str) -> ImportResult:
    """Import a JSONL, CSV or Parquet file of prompts and responses, all or nothing,
    reading it as it imports (prompts_import's batches), never whole."""
    suffix = Path(name).suffix.lower()
    if suffix not in READERS:
        known = ", ".join(sorted(READERS))
        raise ImportRejected(name, [RowError(0, "file", f"unknown file type; use one of {known}")])
    reader, unit = READERS[suffix]
    return prompts_import(project=project, rows=reader(file), source=name, unit=unit)
