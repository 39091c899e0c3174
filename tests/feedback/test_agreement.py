"""Agreement statistics: known values on small cases (no database)."""

import pytest

from feedback import agreement


def test_cohen_kappa_is_one_for_identical_labels_and_undefined_for_one_label():
    assert agreement.cohen_kappa_table({("A", "A"): 2, ("B", "B"): 1}) == 1.0
    assert agreement.cohen_kappa_table({("A", "A"): 2}) is None


def test_cohen_kappa_from_counted_pairs_matches_a_hand_computed_case():
    table = {("A", "A"): 20, ("A", "B"): 5, ("B", "A"): 10, ("B", "B"): 15}
    # observed 35/50 = 0.7; expected 0.5 * 0.6 + 0.5 * 0.4 = 0.5
    assert agreement.cohen_kappa_table(table) == pytest.approx(0.4)
    assert agreement.cohen_kappa_table({("A", "B"): 1}) is None


def test_fleiss_kappa_matches_a_hand_computed_case():
    items = [["A", "A"], ["A", "B"], ["B", "B"], ["B", "B"]]
    # P = 0.75, expected = (3/8)^2 + (5/8)^2 = 0.53125
    assert agreement.fleiss_kappa(items) == pytest.approx((0.75 - 0.53125) / (1 - 0.53125))
    counted = [{"A": 2}, {"A": 1, "B": 1}, {"B": 2}, {"B": 2}]
    assert agreement.fleiss_kappa(iter(counted)) == agreement.fleiss_kappa(items)


def test_fleiss_kappa_handles_items_with_different_numbers_of_raters():
    items = [["A", "A", "A"], ["B", "B"], ["A", "B", "A"]]
    value = agreement.fleiss_kappa(items)
    assert value is not None and -1 <= value <= 1


def test_krippendorff_alpha_is_one_when_raters_agree_and_none_with_one_rater():
    ratings = {1: {"x": 1, "y": 1}, 2: {"x": 5, "y": 5}, 3: {"x": 3, "y": 3}}
    assert agreement.krippendorff_alpha(ratings) == pytest.approx(1.0)
    assert agreement.krippendorff_alpha({1: {"x": 1}, 2: {"x": 2}}) is None


def test_alpha_without_a_disagreeing_rater_rises():
    ratings = {i: {"x": i, "y": i, "z": 6 - i} for i in range(1, 6)}
    without = agreement.alpha_without_each(ratings)
    assert without["z"] == pytest.approx(1.0)
    assert without["x"] < without["z"]


def test_kendall_tau_of_reversed_orders_is_minus_one():
    assert agreement.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert agreement.kendall_tau([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)


def test_span_f1_counts_characters_with_the_same_label():
    assert agreement.span_f1([(0, 10, "err")], [(0, 10, "err")]) == 1.0
    assert agreement.span_f1([(0, 10, "err")], [(5, 15, "err")]) == pytest.approx(0.5)
    assert agreement.span_f1([(0, 10, "err")], [(0, 10, "unsafe")]) == 0.0
    assert agreement.span_f1([(0, 10, "err")], []) == 0.0
    assert agreement.span_f1([], []) is None


def test_per_rater_averages_each_raters_pairs():
    ratings = {1: {"a": "A", "b": "A", "c": "B"}, 2: {"a": "B", "b": "B", "c": "B"}}
    pairs = agreement.by_rater_pairs(ratings, lambda x, y: float(x == y))
    assert pairs == {("a", "b"): 1.0, ("a", "c"): 0.5, ("b", "c"): 0.5}
    assert agreement.per_rater(pairs) == {"a": 0.75, "b": 0.75, "c": 0.5}


def test_protocol_disagreement_counts_opposite_orders_and_rating_ties():
    result = agreement.protocol_disagreement([(0, 0.9, 0.1), (0, 0.1, 0.9), (1, 0.5, 0.5)])
    assert (result["agree"], result["opposite"], result["rating_ties"]) == (1, 1, 1)
    assert result["disagreement_rate"] == pytest.approx(2 / 3)
    assert agreement.protocol_disagreement([])["disagreement_rate"] is None
