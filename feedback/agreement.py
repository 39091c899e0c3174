"""Agreement between annotators, and between protocols: numbers in, numbers out.

No Django here; `feedback.selectors` gathers the data. Inputs are mappings
item -> rater -> label (rater and item are any hashable). A statistic that the data
cannot define (one rater, no variation) is None rather than a made-up number.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from statistics import fmean
from typing import Any

import krippendorff
import numpy as np

Ratings = Mapping[Hashable, Mapping[Hashable, Any]]  # item -> rater -> label
Span = tuple[int, int, str]  # start, end (exclusive), label


def _defined(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def cohen_kappa_table(table: Mapping[tuple[Hashable, Hashable], int]) -> float | None:
    """Cohen's kappa from counts of (label of rater a, label of rater b) (sklearn, weighted),
    so that a database can count the pairs instead of shipping every label."""
    # Imported here: scikit-learn and scipy.stats add 120 MB to every web and worker
    # process that loads the selectors, most of which never compute agreement.
    from sklearn.metrics import cohen_kappa_score

    cells = [(x, y, n) for (x, y), n in table.items() if n]
    if sum(n for _, _, n in cells) < 2:
        return None
    if len({x for x, _, _ in cells} | {y for _, y, _ in cells}) == 1:
        return None  # both always gave the same single label: kappa is 0/0
    return _defined(
        cohen_kappa_score(
            [str(x) for x, _, _ in cells],
            [str(y) for _, y, _ in cells],
            sample_weight=[n for _, _, n in cells],
        )
    )


def fleiss_kappa(items: Iterable[Sequence[Hashable] | Mapping[Hashable, int]]) -> float | None:
    """Fleiss' kappa over items each labelled by two or more raters.

    An item is its labels, or counts per label. Items may have different numbers of raters:
    each item's agreement is computed over its own rater pairs (Fleiss 1971, with n varying
    by item). One pass, so items can stream from the database.
    """
    totals: Counter[Hashable] = Counter()
    observed_sum = 0.0
    count = 0
    for item in items:
        counts = item if isinstance(item, Mapping) else Counter(item)
        n = sum(counts.values())
        if n < 2:
            continue
        totals.update(counts)
        observed_sum += (sum(c * c for c in counts.values()) - n) / (n * (n - 1))
        count += 1
    if not count:
        return None
    all_labels = sum(totals.values())
    expected = sum((total / all_labels) ** 2 for total in totals.values())
    if expected == 1:
        return None
    return (observed_sum / count - expected) / (1 - expected)


def krippendorff_alpha(ratings: Ratings, level: str = "interval") -> float | None:
    """Krippendorff's alpha (the `krippendorff` package) over item -> rater -> value."""
    raters = sorted({rater for by_rater in ratings.values() for rater in by_rater}, key=str)
    if len(raters) < 2:
        return None
    units = [by_rater for by_rater in ratings.values() if len(by_rater) >= 2]
    if not units:
        return None
    matrix = np.full((len(raters), len(units)), np.nan)
    index = {rater: i for i, rater in enumerate(raters)}
    for column, by_rater in enumerate(units):
        for rater, value in by_rater.items():
            matrix[index[rater], column] = value
    if len(np.unique(matrix[~np.isnan(matrix)])) < 2:
        return None
    return _defined(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))


def kendall_tau(order_a: Sequence[Hashable], order_b: Sequence[Hashable]) -> float | None:
    """Kendall's tau-b between two orders (best first) of the same items (scipy)."""
    from scipy.stats import kendalltau  # see cohen_kappa_table

    shared = [item for item in order_a if item in set(order_b)]
    if len(shared) < 2:
        return None
    rank_b = {item: rank for rank, item in enumerate(order_b)}
    tau = kendalltau(range(len(shared)), [rank_b[item] for item in shared]).statistic
    return _defined(tau)


def span_f1(spans_a: Sequence[Span], spans_b: Sequence[Span]) -> float | None:
    """Character-overlap F1 of two raters' labelled spans on one text.

    A character counts as agreed when both put it in a span of the same label. Two empty
    sets say nothing (None); one empty and one not is 0.
    """
    chars_a, chars_b = _labelled_chars(spans_a), _labelled_chars(spans_b)
    if not chars_a and not chars_b:
        return None
    overlap = len(chars_a & chars_b)
    return 2 * overlap / (len(chars_a) + len(chars_b))


def _labelled_chars(spans: Sequence[Span]) -> set[tuple[int, str]]:
    return {(i, label) for start, end, label in spans for i in range(start, end)}


# --- Per rater pair, and per rater -----------------------------------------------------


def by_rater_pairs(
    ratings: Ratings, metric: Callable[[Any, Any], float | None]
) -> dict[tuple[Hashable, Hashable], float]:
    """The metric item by item, averaged, for each two raters who share items (tau, F1)."""
    shared: dict[tuple[Hashable, Hashable], list[tuple[Any, Any]]] = defaultdict(list)
    for by_rater in ratings.values():
        for r1, r2 in itertools.combinations(sorted(by_rater, key=str), 2):
            shared[(r1, r2)].append((by_rater[r1], by_rater[r2]))
    scores: dict[tuple[Hashable, Hashable], float] = {}
    for pair, labels in shared.items():
        values = [v for v in (metric(a, b) for a, b in labels) if v is not None]
        if values:
            scores[pair] = fmean(values)
    return scores


def per_rater(pair_scores: Mapping[tuple[Hashable, Hashable], float]) -> dict[Hashable, float]:
    """Each rater's mean score with the others, raters in name order."""
    collected: dict[Hashable, list[float]] = defaultdict(list)
    for (r1, r2), score in pair_scores.items():
        collected[r1].append(score)
        collected[r2].append(score)
    return {rater: fmean(collected[rater]) for rater in sorted(collected, key=str)}


def mean_or_none(values: Sequence[float]) -> float | None:
    return fmean(values) if values else None


def alpha_without_each(ratings: Ratings, level: str = "interval") -> dict[Hashable, float | None]:
    """Alpha with each rater left out: a rise means that rater pulled agreement down."""
    raters = {rater for by_rater in ratings.values() for rater in by_rater}
    return {
        rater: krippendorff_alpha(
            {item: {r: v for r, v in by.items() if r != rater} for item, by in ratings.items()},
            level,
        )
        for rater in raters
    }


# --- Across protocols ------------------------------------------------------------------


def protocol_disagreement(comparisons: Sequence[tuple[int, float, float]]) -> dict[str, Any]:
    """How often ratings contradict pairwise choices on the same two responses.

    Each comparison is (winner of the pairwise choice: 0 for a, 1 for b; score of a;
    score of b). Ratings disagree when they order the pair the other way or tie it; the
    second is how Bansal et al. (2023, "Peering Through Preferences") count the ~60%
    inconsistency between ratings and rankings.
    """
    opposite = tie = 0
    for winner, score_a, score_b in comparisons:
        if score_a == score_b:
            tie += 1
        elif (score_a > score_b) != (winner == 0):
            opposite += 1
    n = len(comparisons)
    return {
        "compared": n,
        "agree": n - opposite - tie,
        "opposite": opposite,
        "rating_ties": tie,
        "disagreement_rate": (opposite + tie) / n if n else None,
        "opposite_rate": opposite / n if n else None,
    }
