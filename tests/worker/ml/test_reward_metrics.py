"""evaluate(): numbers that can be checked by hand."""

import json
import math

import numpy as np
import pytest

from worker.ml.reward_metrics import evaluate
from worker.ml.rewards import Comparison

PROMPT = [{"role": "user", "content": "q"}]


def pair(chosen="aa", rejected="b", group="g", **fields) -> Comparison:
    return Comparison(prompt=PROMPT, chosen=chosen, rejected=rejected, group=group, **fields)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_accuracy_counts_ties_as_wrong():
    rows = [pair(), pair(), pair(tie=True), pair()]
    result = evaluate([1.0, 0.0, 5.0, 2.0], [0.0, 1.0, 0.0, 1.0], rows)
    assert result["accuracy"] == 0.5  # right, wrong, tie (wrong although ahead), right
    assert result["n_ties"] == 1
    assert result["n"] == result["n_target"] == 4


def test_accuracy_per_agreement_level():
    rows = [
        pair(agreement=1.0),
        pair(agreement=1.0),
        pair(agreement=2 / 3),
        pair(agreement=0.67),
        pair(agreement=None),
    ]
    result = evaluate([1, 1, 1, 0, 1], [0, 0, 0, 1, 0], rows)
    assert result["accuracy_by_agreement"] == [
        {"agreement": 0.67, "accuracy": 0.5, "n": 2},
        {"agreement": 1.0, "accuracy": 1.0, "n": 2},
    ]


def test_a_perfectly_calibrated_model_has_an_expected_calibration_error_near_zero():
    # P(chosen) = 0.8 on 100 pairs, right on 80 of them; P = 0.65 on 100, right on 65.
    gaps = [logit(0.8)] * 80 + [-logit(0.8)] * 20 + [logit(0.65)] * 65 + [-logit(0.65)] * 35
    rows = [pair() for _ in gaps]
    result = evaluate(gaps, np.zeros(len(gaps)), rows)
    assert result["ece"] == pytest.approx(0.0, abs=1e-9)
    bins = {round(b["mean_predicted"], 2): b for b in result["reliability"]}
    assert bins[0.8]["observed"] == pytest.approx(0.8) and bins[0.8]["count"] == 100
    assert bins[0.35]["observed"] == pytest.approx(0.35)
    assert sum(b["count"] for b in result["reliability"]) == 2 * len(gaps)  # symmetrised


def test_an_overconfident_model_has_a_large_calibration_error():
    gaps = [5.0] * 50 + [-5.0] * 50  # P = 0.993 and right half of the time
    result = evaluate(gaps, np.zeros(100), [pair() for _ in gaps])
    assert result["ece"] == pytest.approx(1 / (1 + math.exp(-5)) - 0.5, abs=1e-9)


def test_reward_length_correlation_has_the_sign_of_the_bias():
    rows = [
        pair(chosen="x" * (2 * i + 2), rejected="y" * (2 * i + 1), group=f"g{i}") for i in range(10)
    ]
    longer_wins = evaluate([len(r.chosen) for r in rows], [len(r.rejected) for r in rows], rows)
    assert longer_wins["length_spearman"] == pytest.approx(1.0)
    assert longer_wins["length_pearson"] == pytest.approx(1.0)
    assert longer_wins["longer_preferred"] == 1.0
    assert longer_wins["labels_longer_chosen"] == 1.0
    shorter_wins = evaluate([-len(r.chosen) for r in rows], [-len(r.rejected) for r in rows], rows)
    assert shorter_wins["length_spearman"] == pytest.approx(-1.0)
    assert shorter_wins["longer_preferred"] == 0.0


def test_human_labels_are_the_target_and_each_judge_gets_its_agreement():
    rows = [
        pair(),
        pair(),
        pair(source="judge:gpt"),
        pair(source="judge:gpt"),
        pair(source="judge:gpt", tie=True),
        pair(source="judge:llama"),
    ]
    result = evaluate([1, 0, 1, 0, 1, 1], [0, 1, 0, 1, 0, 0], rows)
    assert (result["accuracy_on"], result["accuracy"], result["n_target"]) == ("human", 0.5, 2)
    assert result["judge_agreement"] == [
        {"judge": "gpt", "agreement": pytest.approx(1 / 3), "n": 3},
        {"judge": "llama", "agreement": 1.0, "n": 1},
    ]
    assert result["by_source"]["human"] == {"accuracy": 0.5, "n": 2}
    judges_only = evaluate([1, 0], [0, 1], rows[2:4])
    assert (judges_only["accuracy_on"], judges_only["accuracy"]) == ("all", 0.5)


def test_the_result_is_json_and_lengths_must_match():
    rows = [pair(), pair(chosen="c", rejected="dddd")]
    json.dumps(evaluate([1.0, 1.0], [1.0, 1.0], rows), allow_nan=False)
    with pytest.raises(ValueError, match="same length"):
        evaluate([1.0], [0.0, 0.0], rows)


def test_spearman_uses_mean_ranks_for_equal_values():
    from scipy.stats import spearmanr

    lengths = ["a", "bb", "bb", "ccc", "dddd", "ee"]
    rows = [pair(chosen=text, rejected="z" * 9, group=f"g{i}") for i, text in enumerate(lengths)]
    rewards = [0.5, 0.1, 0.1, 0.9, 0.3, 0.7]
    result = evaluate(rewards, [0.0] * 6, rows)
    # Each (group, text) once: six chosen texts and the rejected one in each of six groups.
    expected = spearmanr([len(t) for t in lengths] + [9] * 6, rewards + [0.0] * 6).statistic
    assert result["length_spearman"] == pytest.approx(expected)
