"""Model instances from raw SQL rows, for the few hot paths that read in one hand-written
statement what the ORM would read in several (the annotator's claim and card), and new
rows written by one prepared statement (the annotator's answer)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg
from django.db import connection, models
from django.db.backends.utils import CursorWrapper
from psycopg.types.numeric import Int8Dumper

M = TypeVar("M", bound=models.Model)


def columns(model: type[models.Model], alias: str) -> str:
    """Every column of `model` as `alias.column`, in field order (what `from_row` reads)."""
    return ", ".join(f"{alias}.{field.column}" for field in model._meta.concrete_fields)


def from_row(model: type[M], values: Sequence[Any]) -> M:
    """An instance from the values of `columns(model, ...)`, converted as the ORM converts
    them (JSON text parsed)."""
    fields = model._meta.concrete_fields
    converted = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


def prepared_cursor() -> CursorWrapper:
    """A cursor for a hot statement: on PostgreSQL it binds server-side, so the statement is
    prepared on first use (settings: prepare_threshold) and its plan kept per connection;
    planning cost more than running the claim. Elsewhere Django's own cursor."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.ensure_connection()
    cursor = psycopg.Cursor(connection.connection)
    # psycopg sends an int as the smallest type that holds its value (smallint for 1), so one
    # statement was prepared again for each mix of sizes, and its smallint parameters kept
    # the planner off the bigint indexes. As bigint, each statement has one set of types.
    cursor.adapters.register_dumper(int, Int8Dumper)
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    return wrap(cursor)


@functools.cache
def _insert_statement(model: type[models.Model]) -> tuple[str, list[models.Field]]:
    """INSERT of every column but the generated id, returning the id; built once a model."""
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)}"
        f" ({', '.join(quote(field.column) for field in fields)})"
        f" VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {quote(model._meta.pk.column)}"
    )
    return sql, fields


def instance_insert(instance: M) -> M:
    """Insert a new instance as `save()` would (defaults, `auto_now_add`), in one prepared
    statement: the ORM builds and binds the INSERT anew for every row, which cost more CPU
    than the database's work on each answer. Sends no signals (none listens on these
    models); a violated constraint raises IntegrityError as `save()` does."""
    sql, fields = _insert_statement(type(instance))
    # As save() and bulk_create() do: take the id of a related object saved after it was
    # assigned, and refuse one never saved.
    instance._prepare_related_fields_for_save(operation_name="instance_insert")
    values = [
        field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields
    ]
    with prepared_cursor() as cursor:
        cursor.execute(sql, values)
        instance.pk = cursor.fetchone()[0]
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance
