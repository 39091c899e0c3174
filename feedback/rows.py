"""Model instances from raw SQL rows, for the few hot paths that read in one hand-written
statement what the ORM would read in several (the annotator's claim and card)."""

from __future__ import annotations

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
