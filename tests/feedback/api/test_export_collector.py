"""While export rows stream, the garbage collector runs less often; afterwards as before."""

import gc

import pytest

from feedback.exports import ExportOptions, Shape, export_rows

pytestmark = pytest.mark.django_db


def test_thresholds_are_raised_only_while_an_export_streams(project, filled):
    before = gc.get_threshold()
    rows = export_rows(project=project, options=ExportOptions(shape=Shape.RAW))
    assert gc.get_threshold() == before  # nothing read yet
    next(rows)
    assert gc.get_threshold()[0] > before[0]
    list(rows)
    assert gc.get_threshold() == before


def test_two_exports_at_once_restore_the_thresholds_when_the_last_ends(project, filled):
    before = gc.get_threshold()
    first = export_rows(project=project, options=ExportOptions(shape=Shape.RAW))
    second = export_rows(project=project, options=ExportOptions(shape=Shape.RAW))
    next(first)
    next(second)
    first.close()  # a client that hung up
    assert gc.get_threshold()[0] > before[0]
    list(second)
    assert gc.get_threshold() == before
