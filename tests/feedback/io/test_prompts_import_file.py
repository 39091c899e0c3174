"""File import: good JSONL, CSV and Parquet files import; one bad row imports nothing."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feedback.io import prompts_import_file
from feedback.models import Prompt, Response, Task
from feedback.services import ImportRejected
from tests.factories import PromptFactory

pytestmark = pytest.mark.django_db

ROWS = [
    {
        "id": "p1",
        "prompt": "Why is the sky blue?",
        "responses": [
            {"text": "Rayleigh scattering.", "model": "big"},
            {"text": "Because of the sea.", "model": "small"},
        ],
        "metadata": {"topic": "science"},
    },
    {
        "id": "p2",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ],
        "responses": ["A joke.", "Another joke.", "A third one."],
    },
]


def jsonl(rows: list[dict]) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps(row) + "\n" for row in rows).encode())


def parquet(rows: list[dict]) -> io.BytesIO:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    buffer.seek(0)
    return buffer


def rejected(project, file, name: str) -> ImportRejected:
    with pytest.raises(ImportRejected) as caught:
        prompts_import_file(project=project, file=file, name=name)
    return caught.value


def test_jsonl_imports_text_and_chat_prompts_with_their_responses(project):
    result = prompts_import_file(project=project, file=jsonl(ROWS), name="data.jsonl")
    assert (result.prompts, result.responses) == (2, 5)
    chat = Prompt.objects.get(external_id="p2")
    assert chat.text == "" and chat.turns[-1] == {"role": "user", "content": "Tell me a joke."}
    plain = Prompt.objects.get(external_id="p1")
    assert plain.metadata == {"topic": "science"}
    assert list(plain.responses.values_list("model_name", flat=True)) == ["big", "small"]


def test_import_creates_the_tasks_the_project_collects(project):
    result = prompts_import_file(project=project, file=jsonl(ROWS), name="data.jsonl")
    # Per prompt: one single task per response, every pair, one ranking list of <= 3.
    layouts = sorted(Task.objects.values_list("layout", flat=True))
    assert layouts.count("single") == 5
    assert layouts.count("pair") == 1 + 3
    assert layouts.count("list") == 2
    assert result.tasks == len(layouts)


def test_parquet_in_the_hugging_face_layout_imports(project):
    rows = [
        {"id": "a", "prompt": "Q1?", "responses": [{"text": "A1", "model": "m"}]},
        {"id": "b", "prompt": "Q2?", "responses": [{"text": "A2", "model": "m"}]},
    ]
    result = prompts_import_file(project=project, file=parquet(rows), name="train.parquet")
    assert result.prompts == 2
    assert set(Response.objects.values_list("text", flat=True)) == {"A1", "A2"}


def test_csv_with_numbered_response_columns_imports(project):
    text = (
        "id,prompt,response_1,model_1,response_2,model_2\n"
        'q1,"What is 2+2?",4,calc,"Four, obviously.",chatty\n'
        "q2,Capital of France?,Paris,geo,,\n"
    )
    result = prompts_import_file(project=project, file=io.BytesIO(text.encode()), name="d.csv")
    assert (result.prompts, result.responses) == (2, 3)
    assert Response.objects.get(text="Four, obviously.").model_name == "chatty"


def test_jsonl_with_one_bad_line_imports_nothing_and_names_the_line(project):
    rows = [*ROWS, {"id": "p3", "prompt": "Fine?", "responses": [{"text": "", "model": "m"}]}]
    error = rejected(project, jsonl(rows), "data.jsonl")
    assert [(e.line, e.field) for e in error.row_errors] == [(3, "responses.0.text")]
    assert "data.jsonl: line 3" in str(error)
    assert not Prompt.objects.exists() and not Task.objects.exists()


def test_jsonl_with_broken_json_names_the_line(project):
    data = io.BytesIO(b'{"prompt": "ok", "responses": ["a"]}\n{"prompt": "oops"\n')
    error = rejected(project, data, "data.jsonl")
    assert [(e.line, e.field) for e in error.row_errors] == [(2, "line")]
    assert not Prompt.objects.exists()


def test_chat_prompt_ending_with_an_assistant_turn_is_refused(project):
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    error = rejected(project, jsonl([row]), "chat.jsonl")
    assert "must end with a user message" in error.row_errors[0].message


def test_csv_with_one_bad_row_imports_nothing_and_names_line_and_field(project):
    text = "id,prompt,metadata,response_1\nq1,Fine?,{},yes\nq2,Broken?,{not json,no\n"
    error = rejected(project, io.BytesIO(text.encode()), "d.csv")
    assert [(e.line, e.field) for e in error.row_errors] == [(3, "metadata")]
    assert not Prompt.objects.exists()


def test_parquet_with_one_bad_row_names_the_row(project):
    rows = [{"id": "a", "prompt": "Q?"}, {"id": "b", "prompt": " "}]
    error = rejected(project, parquet(rows), "bad.parquet")
    assert [(e.unit, e.line) for e in error.row_errors] == [("row", 2)]
    assert "bad.parquet: row 2" in str(error)
    assert not Prompt.objects.exists()


def test_id_already_in_the_project_is_refused(project):
    PromptFactory(project=project, external_id="p1")
    error = rejected(project, jsonl(ROWS), "data.jsonl")
    assert [(e.line, e.field) for e in error.row_errors] == [(1, "id")]
    assert Prompt.objects.count() == 1


def test_unknown_extension_is_refused(project):
    error = rejected(project, io.BytesIO(b"x"), "data.xlsx")
    assert "unknown file type" in str(error)


def test_nul_character_in_a_file_is_refused_with_line_and_field(project):
    PromptFactory(project=project, external_id="kept")
    rows = [ROWS[0], {"prompt": "Fine?", "responses": ["ok", {"text": "bad\u0000", "model": "m"}]}]
    error = rejected(project, jsonl(rows), "data.jsonl")
    assert [(e.line, e.field) for e in error.row_errors] == [(2, "responses.1.text")]
    assert "NUL" in error.row_errors[0].message
    assert list(Prompt.objects.values_list("external_id", flat=True)) == ["kept"]


def test_nul_character_in_a_csv_metadata_key_is_refused(project):
    text = 'id,prompt,metadata\nq1,Fine?,"{""to\\u0000pic"": 1}"\n'
    error = rejected(project, io.BytesIO(text.encode()), "d.csv")
    assert [(e.line, e.field) for e in error.row_errors] == [(2, "metadata.to\\u0000pic")]


def test_nul_character_in_a_parquet_binary_column_is_refused(project):
    rows = [{"id": "a", "prompt": b"Fine?"}, {"id": "b", "prompt": b"bad\x00"}]
    error = rejected(project, parquet(rows), "bin.parquet")
    assert [(e.unit, e.line, e.field) for e in error.row_errors] == [("row", 2, "prompt")]
    assert not Prompt.objects.exists()


@pytest.mark.parametrize("depth", [150, 5000])
def test_deeply_nested_metadata_in_a_file_is_refused_with_the_line(project, depth):
    metadata = '{"a": ' * depth + "1" + "}" * depth
    data = io.BytesIO(b'{"prompt": "ok"}\n{"prompt": "deep", "metadata": %s}\n' % metadata.encode())
    error = rejected(project, data, "data.jsonl")
    assert [e.line for e in error.row_errors] == [2]
    assert "nested deeper than" in error.row_errors[0].message
    assert not Prompt.objects.exists()
