"""An import works through its rows a batch at a time and is still all or nothing."""

import pytest

from feedback import services
from feedback.models import Prompt, Task
from feedback.services import ImportRejected, RowError, prompts_import
from tests.factories import PromptFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """Batches of 4 rows, so that a few rows cross several batches."""
    monkeypatch.setattr(services, "IMPORT_BATCH_ROWS", 4)


def numbered_rows(count: int) -> list[dict]:
    chat = [
        {"role": "system", "content": "Réponds en une ligne, <b>pas</b> de HTML."},
        {"role": "user", "content": "東京は?"},
    ]
    return [
        {
            "id": f"q{n}",
            "prompt": chat if n % 3 == 0 else f"Question {n} ✓",
            "responses": [f"One {n}", {"text": f"Two {n} 🌍", "model": "m"}],
        }
        for n in range(count)
    ]


def test_a_bad_row_in_a_later_batch_stores_nothing_and_names_line_and_field(project):
    PromptFactory(project=project, external_id="kept")
    given = [(line, row) for line, row in enumerate(numbered_rows(11), start=1)]
    given[9][1]["responses"][1]["text"] = " "
    with pytest.raises(ImportRejected) as caught:
        prompts_import(project=project, rows=given)
    assert [(e.line, e.field) for e in caught.value.row_errors] == [(10, "responses.1.text")]
    assert list(Prompt.objects.values_list("external_id", flat=True)) == ["kept"]
    assert not Task.objects.exists()


def test_ids_repeated_across_batches_and_reader_errors_are_all_reported(project):
    PromptFactory(project=project, external_id="q7")
    given: list = [(line, row) for line, row in enumerate(numbered_rows(11), start=1)]
    given[9][1]["id"] = "q1"  # line 10 repeats line 2, three batches later
    given[4] = RowError(5, "line", "invalid JSON")
    with pytest.raises(ImportRejected) as caught:
        prompts_import(project=project, rows=given)
    assert [(e.line, e.field, e.message) for e in caught.value.row_errors] == [
        (5, "line", "invalid JSON"),
        (8, "id", "prompt 'q7' already exists"),
        (10, "id", "'q1' repeats line 2"),
    ]
    assert Prompt.objects.count() == 1
