"""The label-efficiency benchmark's parts: data sets, the simulated loop and its summary.

The loop runs here on small made-up features (no sentence model), so it is quick.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from worker.ml.selection import SELECTORS, select_random

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "label_efficiency.py"
spec = importlib.util.spec_from_file_location("label_efficiency", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def linear_pool(prompts: int = 40, per_prompt: int = 6, dim: int = 12) -> "bench.Pool":
    """Responses whose true reward is linear in their features, on a scale where most
    annotators' answers follow it."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(prompts * per_prompt, dim)).astype(np.float32)
    return bench.Pool(
        prompt_of=np.repeat(np.arange(prompts), per_prompt),
        reward=features @ rng.normal(size=dim) * 2.0,
        features=features,
    )


def test_simulated_loop_learns_the_reward_and_starts_every_selector_from_the_same_labels():
    pool = linear_pool()
    options = {"seed": 3, "batch": 20, "rounds": 5, "heads": 4, "max_pairs_per_prompt": 100}
    uniform = bench.run(pool, select_random, **options)
    chosen = bench.run(pool, SELECTORS["disagreement"], **options)
    assert len(uniform) == len(chosen) == 5
    assert uniform[0] == chosen[0]  # the same random first batch and answers
    assert uniform[1:] != chosen[1:]
    assert min(uniform + chosen) > 0.75  # chance is 0.5
    assert bench.run(pool, select_random, **options) == uniform


def test_held_out_pairs_are_ordered_by_the_true_reward_and_skip_ties():
    pool = bench.Pool(
        prompt_of=np.array([0, 0, 0, 1, 1]),
        reward=np.array([1.0, 3.0, 1.0, 0.0, 2.0]),
        features=np.zeros((5, 2), dtype=np.float32),
    )
    better, worse = bench.held_out_pairs(pool, np.array([0]))
    assert sorted(zip(better.tolist(), worse.tolist(), strict=True)) == [(1, 0), (1, 2)]


def test_labels_to_reach_interpolates_between_rounds_and_says_when_never_reached():
    labels = np.array([40, 80, 120])
    accuracy = np.array([0.6, 0.7, 0.8])
    assert bench.labels_to_reach(labels, accuracy, 0.75) == pytest.approx(100)
    assert bench.labels_to_reach(labels, accuracy, 0.5) == 40
    assert bench.labels_to_reach(labels, accuracy, 0.9) is None


def test_generated_set_round_trips_through_a_data_file(tmp_path):
    rows = bench.make_dataset(6, 8, np.random.default_rng(0))
    assert all(len({r["text"] for r in row["responses"]}) == 8 for row in rows)
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert bench.load_dataset(path) == rows


def test_a_data_file_row_without_rewards_is_refused_naming_line_and_field(tmp_path):
    path = tmp_path / "set.jsonl"
    good = {"prompt": "Hi <b>there</b>", "responses": [{"text": "a", "reward": 1}] * 2}
    bad = {"prompt": "Why?", "responses": [{"text": "a"}, {"text": "b", "reward": 0.5}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"set\.jsonl:2: responses: each needs text and reward"):
        bench.load_dataset(path)
