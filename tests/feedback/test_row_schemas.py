"""The row models accept exactly what their JSON Schema (the API's OpenAPI) describes."""

import pytest
from pydantic import ValidationError

from feedback.schemas import CandidateRow, ImportedRow


@pytest.mark.parametrize("prompt_id", ["5", True, 5.0])
def test_a_prompt_id_must_be_a_json_integer(prompt_id):
    with pytest.raises(ValidationError):
        CandidateRow.model_validate({"prompt_id": prompt_id, "text": "İstanbul 🎉"})


def test_an_integer_row_id_is_read_as_text_but_a_boolean_is_refused():
    assert ImportedRow.model_validate({"id": 7, "prompt": "<b>hi</b>"}).id == "7"
    with pytest.raises(ValidationError):
        ImportedRow.model_validate({"id": True, "prompt": "<b>hi</b>"})
