"""Many new rows of one table at once: COPY on PostgreSQL, a multi-row INSERT elsewhere.

COPY skips the per-row work of an ORM insert (a model instance, a value per field, one
large statement to build and parse): an import of 10,000 prompts writes ~60,000 rows. The
ids are reserved from the table's sequence first, so that rows of the next table can
point at them. SQLite (the demo) has neither, and gets `bulk_create`.
"""

import json
from collections.abc import Sequence
from typing import Any

import orjson
from django.db import connection, models


def rows_insert(model: type[models.Model], fields: Sequence[str], rows: Sequence[tuple]) -> list:
    """Insert `rows` (values in the order of `fields`, attnames such as "prompt_id") into
    the model's table, in one COPY or a few INSERTs; returns their new ids in order.

    Fields left out get no Python default: pass every column the table requires.
    """
    if not rows:
        return []
    if connection.vendor != "postgresql":
        created = model.objects.bulk_create(
            (model(**dict(zip(fields, row, strict=True))) for row in rows), batch_size=1000
        )
        return [instance.pk for instance in created]
    table = model._meta.db_table
    by_attname = {f.attname: f for f in model._meta.concrete_fields}
    json_at = [i for i, name in enumerate(fields) if isinstance(by_attname[name], models.JSONField)]
    columns = ", ".join(connection.ops.quote_name(name) for name in ("id", *fields))
    with connection.cursor() as cursor:
        # One statement, so the ids come in order; concurrent imports may interleave. The
        # sequence is looked up once (the CTE): as an argument of nextval, the name would
        # be resolved again for every row, 9 in 10 of the statement's time.
        cursor.execute(
            "WITH seq AS MATERIALIZED"
            " (SELECT pg_get_serial_sequence(%s, 'id')::regclass AS oid)"
            " SELECT nextval(seq.oid) FROM seq, generate_series(1, %s)",
            [table, len(rows)],
        )
        ids = [id_ for (id_,) in cursor.fetchall()]
        quoted = connection.ops.quote_name(table)
        with cursor.copy(f"COPY {quoted} ({columns}) FROM STDIN") as copy:
            for id_, row in zip(ids, rows, strict=True):
                if json_at:
                    row = _json_as_text(row, json_at)
                copy.write_row((id_, *row))
    return ids


def _json_as_text(row: tuple, json_at: list[int]) -> list[Any]:
    # COPY's text format takes jsonb as JSON text; None stays NULL. orjson refuses
    # integers past 64 bits, which JSON (and jsonb) allow: json writes those.
    values = list(row)
    for index in json_at:
        if values[index] is not None:
            try:
                values[index] = orjson.dumps(values[index]).decode()
            except TypeError:
                values[index] = json.dumps(values[index])
    return values
