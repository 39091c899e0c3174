"""Exports: every shape and form loads with `datasets`, and the rows meet what TRL checks.

The shared `filled` project mixes plain-text prompts with multi-turn chats that open with a
system turn, and carries Unicode, Markdown and HTML-looking text (tests/factories.py).
"""

import itertools
import json

import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from django.db import connection
from django.urls import reverse

from feedback.models import Prompt, Task
from feedback.services import FeedbackInput, RatingInput, submission_create
from tests.factories import JudgeFactory, feedback_fill

pytestmark = pytest.mark.django_db

SHAPES = ["raw", "pairs", "unpaired", "ratings", "rankings", "spans"]


def export(client, project, **params):
    return client.get(reverse("api:project-export", args=[project.pk]), params)


def rows(client, project, **params) -> list[dict]:
    response = export(client, project, **params)
    assert response.status_code == 200, response.content
    body = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in body.splitlines()]


# raw: 13 choices, 60 ratings, 6 spans, 6 critiques, 6 rankings. spans: 24 clean + 6 marked.
EXPECTED = {"raw": 91, "pairs": 11, "unpaired": 22, "ratings": 30, "rankings": 6, "spans": 30}


@pytest.fixture
def filled_text(project, members):
    """`filled` with plain-text prompts only, which the text form can hold."""
    annotators = [members["annotator"], members["ann2"], members["ann3"]]
    return feedback_fill(project, annotators, judge=JudgeFactory(name="judge-a"), chat=False)


def load(response, tmp_path, fmt: str):
    assert response.status_code == 200 and response.streaming, response
    assert "attachment" in response["Content-Disposition"]
    path = tmp_path / f"export.{fmt}"
    path.write_bytes(b"".join(response.streaming_content))
    builder = "json" if fmt == "jsonl" else "parquet"
    return load_dataset(builder, data_files=str(path), split="train", cache_dir=str(tmp_path / "c"))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_of_a_project_mixing_text_and_chat_loads_with_datasets(
    viewer_client, project, filled, tmp_path, shape, fmt
):
    response = export(viewer_client, project, shape=shape, format=fmt)
    dataset = load(response, tmp_path, fmt)
    assert len(dataset) == EXPECTED[shape]
    prompts = dataset["prompt"]
    assert all(isinstance(prompt, list) for prompt in prompts)  # one form per file
    assert any(prompt[0]["role"] == "system" and len(prompt) == 4 for prompt in prompts)
    # auto picked chat, so asking for chat gives the same file.
    chat = export(viewer_client, project, shape=shape, format=fmt, form="chat")
    if fmt == "jsonl":
        assert b"".join(chat.streaming_content) == (tmp_path / "export.jsonl").read_bytes()
    else:
        assert load(chat, tmp_path, fmt)[:] == dataset[:]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_text_form_is_refused_for_chats_and_loads_for_plain_prompts(
    viewer_client, project, filled_text, tmp_path, shape
):
    dataset = load(export(viewer_client, project, shape=shape, form="text"), tmp_path, "jsonl")
    assert len(dataset) == EXPECTED[shape]
    assert all(isinstance(prompt, str) for prompt in dataset["prompt"])
    Prompt.objects.create(
        project=project, messages=[{"role": "system", "content": "Be brief."}, *CHAT_TAIL]
    )
    refused = export(viewer_client, project, shape=shape, form="text")
    assert refused.status_code == 400 and "form" in refused.json()["errors"]


CHAT_TAIL = [{"role": "user", "content": "Name a colour."}]


def test_chat_pairs_keep_every_turn_and_answer_with_one_assistant_turn(
    viewer_client, project, filled
):
    exported = rows(viewer_client, project, shape="pairs")
    chats = {
        prompt.pk: prompt.messages
        for prompt in Prompt.objects.filter(project=project, messages__isnull=False)
    }
    assert {row["prompt_id"] for row in exported} & set(chats)
    for row in exported:
        expected = chats.get(row["prompt_id"]) or [
            {"role": "user", "content": Prompt.objects.get(pk=row["prompt_id"]).text}
        ]
        assert row["prompt"] == expected
        assert row["chosen"] == [{"role": "assistant", "content": row["chosen"][0]["content"]}]
        assert all(isinstance(m["content"], str) and m["content"] for m in row["prompt"])


def test_plain_text_pairs_put_the_space_at_the_start_of_the_answer(
    viewer_client, project, filled_text
):
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


def test_pairs_carry_ids_lengths_and_a_float_margin(viewer_client, project, filled_text):
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


def test_ties_are_kept_only_as_a_column_for_analysis(viewer_client, project, filled):
    exported = rows(
        viewer_client,
        project,
        shape="pairs",
        aggregate="majority",
        ties="keep_as_column",
        sources="annotators",
    )
    assert len(exported) == 4
    assert [row["tie"] for row in exported].count(True) == 1
    # TRL has no tie column: a plain "keep" would train each tie as a preference.
    refused = export(viewer_client, project, shape="pairs", ties="keep")
    assert refused.status_code == 400 and "keep_as_column" in str(refused.json()["ties"])


def test_unpaired_labels_are_booleans_one_of_each_per_pair(viewer_client, project, filled_text):
    exported = rows(viewer_client, project, shape="unpaired")
    assert all(isinstance(row["label"], bool) for row in exported)
    assert all(row["completion"].startswith(" ") for row in exported)
    by_pair = {}
    for row in exported:
        by_pair.setdefault(tuple(row["record_ids"]), []).append(row["label"])
    assert all(sorted(labels) == [False, True] for labels in by_pair.values())


def test_unpaired_rows_are_shuffled_the_same_way_for_the_same_seed(viewer_client, project, filled):
    first = rows(viewer_client, project, shape="unpaired", seed="7")
    assert rows(viewer_client, project, shape="unpaired", seed="7") == first
    other = rows(viewer_client, project, shape="unpaired", seed="8")
    assert other != first and sorted(map(str, other)) == sorted(map(str, first))
    # KTO pairs each row with its neighbours' prompts for its KL term: a pair's two rows
    # must not sit side by side, as they did before the shuffle.
    neighbours = sum(a["record_ids"] == b["record_ids"] for a, b in itertools.pairwise(first))
    assert neighbours <= len(first) // 4


def test_pairs_are_derived_from_rankings_and_from_ratings(viewer_client, project, filled):
    from_rankings = rows(viewer_client, project, shape="pairs", pairs_from="rankings")
    assert len(from_rankings) == 2 * 3 * 3  # two lists, three rankers, three pairs each
    # Ratings are asked on single-response tasks: a pair is one rater's two ratings of two
    # responses to one prompt, from two tasks.
    from_ratings = rows(viewer_client, project, shape="pairs", pairs_from="ratings")
    assert len(from_ratings) == 4 * 3
    rated = {task.pk: task.links.get().response_id for task in filled["rated"]}
    for row in from_ratings:
        assert len(row["task_ids"]) == 2 and set(row["task_ids"]) <= set(rated)
        assert len(row["sources"]) == 1  # one rater
        assert {rated[t] for t in row["task_ids"]} == {
            row["chosen_response_id"],
            row["rejected_response_id"],
        }
    shown_first = {
        task.links.get(position=0).response_id for task in filled["pairs"]
    }  # rated 4, above the other
    assert {row["chosen_response_id"] for row in from_ratings} == shown_first
    pooled = rows(viewer_client, project, shape="pairs", pairs_from="ratings", aggregate="majority")
    assert len(pooled) == 4
    assert all(0.5 < row["agreement"] <= 1 for row in pooled)


def test_pairs_say_on_which_side_the_chosen_response_was_shown(viewer_client, project, filled):
    exported = rows(viewer_client, project, shape="pairs", sources="annotators")
    for row in exported:
        link = Task.objects.get(pk=row["task_ids"][0]).links
        assert link.get(position=row["chosen_position"]).response_id == row["chosen_response_id"]
    assert {row["chosen_position"] for row in exported} == {0, 1}  # A and B both won
    from_ratings = rows(viewer_client, project, shape="pairs", pairs_from="ratings")
    assert {row["chosen_position"] for row in from_ratings} == {-1}  # never side by side


def test_ratings_rankings_and_spans_keep_their_details(viewer_client, project, filled):
    ratings = rows(viewer_client, project, shape="ratings")
    single = next(row for row in ratings if len(row["completions"][0]["ratings"]) == 2)
    assert {r["aspect"] for r in single["completions"][0]["ratings"]} == {"Helpfulness", "Honesty"}
    rankings = rows(viewer_client, project, shape="rankings")
    assert all(len(row["completions"]) == 3 == len(row["response_ids"]) for row in rankings)
    spans = [row for row in rows(viewer_client, project, shape="spans") if row["spans"]]
    span = spans[0]["spans"][0]
    assert span["label"] == "Factual error" and span["severity"] == "major"
    assert span["quote"] == spans[0]["response"][span["start"] : span["end"]]


def test_spans_export_keeps_responses_checked_and_found_clean(viewer_client, project, filled):
    exported = rows(viewer_client, project, shape="spans")
    clean = [row for row in exported if row["spans"] == []]
    assert len(clean) == 24  # each annotator's eight rated responses, no span marked
    assert {row["task_id"] for row in clean} == {task.pk for task in filled["rated"]}
    # A judge that was asked only for ratings did not look for spans: no row.
    judge = JudgeFactory(name="rater-only")
    task = filled["rated"][0]
    response_id = task.links.get().response_id
    aspect = project.aspects.first()
    submission_create(
        task=task,
        judge=judge,
        feedback=FeedbackInput(ratings=[RatingInput(response_id, aspect.pk, 3)]),
    )
    assert len(rows(viewer_client, project, shape="spans")) == len(exported)


def test_raw_holds_every_record_with_timings(viewer_client, project, filled):
    exported = rows(viewer_client, project, shape="raw")
    kinds = {row["kind"] for row in exported}
    assert kinds == {"pairwise", "rating", "ranking", "span", "free_text"}
    pairwise = next(row for row in exported if row["kind"] == "pairwise" and row["annotator"])
    assert pairwise["duration_ms"] >= 1000 and len(pairwise["responses"]) == 2
    assert json.loads(pairwise["data"])["choice"] in {"A", "B", "tie"}
    judged = next(row for row in exported if row["judge"])
    assert judged["duration_ms"] == -1
    for row in exported:
        shown = Task.objects.get(pk=row["task_id"]).links.order_by("position")
        assert row["responses"] == [
            {
                "response_id": link.response_id,
                "position": link.position,
                "model": link.response.model_name,
                "text": link.response.text,
            }
            for link in shown.select_related("response")
        ]


def test_chat_form_can_be_asked_for_plain_prompts(viewer_client, project, filled_text, tmp_path):
    response = export(viewer_client, project, shape="pairs", form="chat", format="parquet")
    path = tmp_path / "chat.parquet"
    path.write_bytes(b"".join(response.streaming_content))
    table = pq.read_table(path)
    first = table.slice(0, 1).to_pylist()[0]
    assert first["prompt"] == [{"role": "user", "content": first["prompt"][0]["content"]}]


def test_impossible_options_are_refused_before_streaming(viewer_client, project, filled):
    response = export(viewer_client, project, shape="ratings", aggregate="majority")
    assert response.status_code == 400 and "aggregate" in response.json()["errors"]
    response = export(viewer_client, project, shape="unpaired", ties="keep_as_column")
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
    pair_tasks = {task.pk: task.prompt_id for task in filled["rated"]}
    for row in pooled:
        assert set(row["task_ids"]) <= set(pair_tasks)
        assert {pair_tasks[task_id] for task_id in row["task_ids"]} == {row["prompt_id"]}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL setting")
def test_export_cursors_are_planned_to_read_every_row():
    # A fast-start plan walks every project's feedback by primary key to find this one's.
    with connection.cursor() as cursor:
        cursor.execute("SHOW cursor_tuple_fraction")
        assert float(cursor.fetchone()[0]) == 1.0
