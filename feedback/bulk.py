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
from psycopg.types.json import set_json_dumps


def rows_insert(model: type[models.Model], fields: Sequence[str], rows: Sequence[tuple]) -> list:
    """Insert `rows` (values in the order of `fields`, attnames such as "prompt_id") into
    the model's table, in one COPY or a few INSERTs; returns their new ids in order.

    Fields left out get no Python default: pass every column the table requires. Dates
    and times are ISO text (`_copy_type`).
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
        set_json_dumps(_json_dumps, cursor.cursor)
        quoted = connection.ops.quote_name(table)
        with cursor.copy(f"COPY {quoted} ({columns}) FROM STDIN") as copy:
            copy.set_types(["int8", *(_copy_type(by_attname[name]) for name in fields)])
            for id_, row in zip(ids, rows, strict=True):
                copy.write_row((id_, *row))
    return ids


def _copy_type(field: models.Field) -> str:
    """The type whose dumper writes the field's values into COPY's text format, named once
    for the statement (psycopg otherwise looks one up for every value): by the Python
    value the caller passes, which for a date is ISO text (psycopg's datetime dumper
    costs microseconds a value, and PostgreSQL reads the text as the column's type)."""
    if field.is_relation:
        field = field.target_field
    if isinstance(field, models.JSONField):
        return "jsonb"
    if isinstance(field, models.BooleanField):
        return "bool"
    if isinstance(field, models.IntegerField):
        return "int8"
    if isinstance(field, models.FloatField):
        return "float8"
    return "text"


def _json_dumps(value: Any) -> bytes | str:
    # orjson refuses integers past 64 bits, which JSON (and jsonb) allow: json writes those.
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value)
