"""Exports: every shape loads with `datasets`, and the rows meet what TRL checks."""

import json

import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from django.db import connection
from django.urls import reverse

from feedback.models import Prompt
from tests.factories import ResponseFactory, task_with_responses

pytestmark = pytest.mark.django_db

SHAPES = ["raw", "pairs", "unpaired", "ratings", "rankings", "spans"]


def export(client, project, **params):
    return client.get(reverse("api:project-export", args=[project.pk]), params)


def rows(client, project, **params) -> list[dict]:
    response = export(client, project, **params)
    assert response.status_code == 200, response.content
    body = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in body.splitlines()]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_export_shape_loads_with_datasets(
    viewer_client, project, filled, tmp_path, shape, fmt
):
    response = export(viewer_client, project, shape=shape, format=fmt)
    assert response.status_code == 200 and response.streaming
    assert "attachment" in response["Content-Disposition"]
    path = tmp_path / f"export.{fmt}"
    path.write_bytes(b"".join(response.streaming_content))
    builder = "json" if fmt == "jsonl" else "parquet"
    dataset = load_dataset(
        builder, data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    expected = {"raw": 67, "pairs": 11, "unpaired": 22, "ratings": 18, "rankings": 6, "spans": 6}
    assert len(dataset) == expected[shape]


def test_plain_text_pairs_put_the_space_at_the_start_of_the_answer(viewer_client, project, filled):
    prompt = Prompt.objects.filter(project=project).first()
    prompt.text = "Question with trailing space?  "
    prompt.save()
    exported = rows(viewer_client, project, shape="pairs")
    for row in exported:
        assert isinstance(row["prompt"], str) and not row["prompt"][-1].isspace()
        assert row["chosen"].startswith(" ") and row["rejected"].startswith(" ")
        assert row["chosen"].strip() and row["rejected"].strip()
    moved = [row for row in exported if row["prompt_id"] == prompt.pk]
    assert all(row["chosen"].startswith("  ") for row in moved)


def test_pairs_carry_ids_lengths_and_a_float_margin(viewer_client, project, filled):
    exported = rows(viewer_client, project, shape="pairs", margin="true")
    assert len(exported) == 11
    for row in exported:
        assert isinstance(row["margin"], float)
        assert row["prompt_chars"] == len(row["prompt"])
        assert row["chosen_chars"] == len(row["chosen"]) - 1
        assert len(row["task_ids"]) == len(row["submission_ids"]) == len(row["record_ids"]) == 1
        assert row["votes"] == 1 and row["agreement"] == 1.0
    assert {row["margin"] for row in exported} <= {1.0, 2.0, 3.0}
    assert "tie" not in exported[0]


def test_majority_gives_one_row_per_task_and_drops_ties(viewer_client, project, filled):
    exported = rows(
        viewer_client, project, shape="pairs", aggregate="majority", sources="annotators"
    )
    assert len(exported) == 3
    split = next(row for row in exported if row["votes"] == 3 and row["agreement"] < 1)
    assert split["agreement"] == pytest.approx(2 / 3)
    assert sorted(len(row["sources"]) for row in exported) == [3, 3, 3]


def test_majority_with_minimum_agreement_drops_split_tasks(viewer_client, project, filled):
    exported = rows(
        viewer_client, project, shape="pairs", aggregate="majority", min_agreement="0.9"
    )
    assert all(row["agreement"] >= 0.9 for row in exported)
    assert len(exported) == 1  # the judge split the first task 3:1, so only one is unanimous


def test_majority_keeps_ties_when_asked_and_marks_them(viewer_client, project, filled):
    exported = rows(
        viewer_client,
        project,
        shape="pairs",
        aggregate="majority",
        ties="keep",
        sources="annotators",
    )
    assert len(exported) == 4
    assert [row["tie"] for row in exported].count(True) == 1


def test_unpaired_labels_are_booleans_in_pairs(viewer_client, project, filled):
    exported = rows(viewer_client, project, shape="unpaired")
    assert {row["label"] for row in exported} == {True, False}
    assert all(isinstance(row["label"], bool) for row in exported)
    assert all(row["completion"].startswith(" ") for row in exported)


def test_pairs_are_derived_from_rankings_and_from_ratings(viewer_client, project, filled):
    from_rankings = rows(viewer_client, project, shape="pairs", pairs_from="rankings")
    assert len(from_rankings) == 2 * 3 * 3  # two lists, three rankers, three pairs each
    from_ratings = rows(viewer_client, project, shape="pairs", pairs_from="ratings")
    assert len(from_ratings) == 4 * 3  # pair tasks where one annotator rated both
    pooled = rows(viewer_client, project, shape="pairs", pairs_from="ratings", aggregate="majority")
    assert len(pooled) == 4
    assert all(0.5 < row["agreement"] <= 1 for row in pooled)


def test_ratings_rankings_and_spans_keep_their_details(viewer_client, project, filled):
    ratings = rows(viewer_client, project, shape="ratings")
    single = next(row for row in ratings if len(row["completions"][0]["ratings"]) == 2)
    assert {r["aspect"] for r in single["completions"][0]["ratings"]} == {"Helpfulness", "Honesty"}
    rankings = rows(viewer_client, project, shape="rankings")
    assert all(len(row["completions"]) == 3 == len(row["response_ids"]) for row in rankings)
    spans = rows(viewer_client, project, shape="spans")
    span = spans[0]["spans"][0]
    assert span["label"] == "Factual error" and span["severity"] == "major"
    assert span["quote"] == spans[0]["response"][span["start"] : span["end"]]


def test_raw_holds_every_record_with_timings(viewer_client, project, filled):
    exported = rows(viewer_client, project, shape="raw")
    kinds = {row["kind"] for row in exported}
    assert kinds == {"pairwise", "rating", "ranking", "span", "free_text"}
    pairwise = next(row for row in exported if row["kind"] == "pairwise" and row["annotator"])
    assert pairwise["duration_ms"] >= 1000 and len(pairwise["responses"]) == 2
    assert json.loads(pairwise["data"])["choice"] in {"A", "B", "tie"}
    judged = next(row for row in exported if row["judge"])
    assert judged["duration_ms"] == -1


def test_a_multi_turn_prompt_makes_the_whole_file_conversational(viewer_client, project, filled):
    chat = Prompt.objects.create(
        project=project,
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Name a colour."},
        ],
    )
    task = task_with_responses(project, "pair", 0)
    task.prompt = chat
    task.save()
    for position in range(2):
        task.links.create(response=ResponseFactory(prompt=chat), position=position)
    exported = rows(viewer_client, project, shape="pairs")
    for row in exported:
        assert isinstance(row["prompt"], list) and row["prompt"][-1]["role"] == "user"
        assert row["chosen"][0]["role"] == "assistant" and len(row["chosen"]) == 1
        assert all(isinstance(m["content"], str) and m["content"] for m in row["prompt"])
    refused = export(viewer_client, project, shape="pairs", form="text")
    assert refused.status_code == 400 and "form" in refused.json()["errors"]


def test_chat_form_can_be_asked_for_plain_prompts(viewer_client, project, filled, tmp_path):
    response = export(viewer_client, project, shape="pairs", form="chat", format="parquet")
    path = tmp_path / "chat.parquet"
    path.write_bytes(b"".join(response.streaming_content))
    table = pq.read_table(path)
    first = table.slice(0, 1).to_pylist()[0]
    assert first["prompt"] == [{"role": "user", "content": first["prompt"][0]["content"]}]


def test_impossible_options_are_refused_before_streaming(viewer_client, project, filled):
    response = export(viewer_client, project, shape="ratings", aggregate="majority")
    assert response.status_code == 400 and "aggregate" in response.json()["errors"]
    response = export(viewer_client, project, shape="unpaired", ties="keep")
    assert response.status_code == 400 and "ties" in response.json()["errors"]
    response = export(viewer_client, project, shape="pairs", pairs_from="ratings", aspect="Nope")
    assert response.status_code == 400 and "aspect" in response.json()["errors"]
    response = export(viewer_client, project, shape="triples")
    assert response.status_code == 400 and "shape" in response.json()


def test_an_empty_project_exports_an_empty_file(viewer_client, project, members, tmp_path):
    assert rows(viewer_client, project, shape="pairs") == []
    response = export(viewer_client, project, shape="pairs", format="parquet")
    path = tmp_path / "empty.parquet"
    path.write_bytes(b"".join(response.streaming_content))
    assert pq.read_table(path).num_rows == 0


def test_pooled_rating_pairs_trace_back_to_tasks_not_prompts(viewer_client, project, filled):
    pooled = rows(viewer_client, project, shape="pairs", pairs_from="ratings", aggregate="majority")
    pair_tasks = {task.pk: task.prompt_id for task in filled["pairs"]}
    for row in pooled:
        assert set(row["task_ids"]) <= set(pair_tasks)
        assert {pair_tasks[task_id] for task_id in row["task_ids"]} == {row["prompt_id"]}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL setting")
def test_export_cursors_are_planned_to_read_every_row():
    # A fast-start plan walks every project's feedback by primary key to find this one's.
    with connection.cursor() as cursor:
        cursor.execute("SHOW cursor_tuple_fraction")
        assert float(cursor.fetchone()[0]) == 1.0
