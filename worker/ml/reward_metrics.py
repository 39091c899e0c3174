"""How good a reward model is on labelled pairs: plain numpy over rewards and comparisons.

`evaluate` takes the model's reward for each pair's chosen and rejected response and the
`Comparison`s themselves (see `worker.ml.rewards`) and returns JSON-able numbers: accuracy,
accuracy per agreement level, a reliability curve with its expected calibration error, the
correlation of reward with response length and the agreement with each LLM judge.

Human labels are the target: `accuracy` (and everything derived from it) is measured on the
human rows when there are any, on all rows otherwise; judge rows are reported per judge.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from worker.ml.rewards import Comparison

RELIABILITY_BINS = 10


def evaluate(
    chosen_rewards: Sequence[float] | np.ndarray,
    rejected_rewards: Sequence[float] | np.ndarray,
    comparisons: Sequence[Comparison],
    *,
    bins: int = RELIABILITY_BINS,
) -> dict[str, Any]:
    """Metrics of rewards on labelled pairs.

    A tie counts as wrong in accuracy (the model cannot predict "equal" with a strict
    order) and as an observed 0.5 in calibration. The reliability curve symmetrises each
    pair: it adds (P(chosen), 1) and (1 - P(chosen), 0), with P(chosen) = sigmoid(reward gap),
    so that a set whose labels all say "chosen" still has a curve over the whole [0, 1]
    range; a model whose 0.8 is right 80% of the time gets an ECE of ~0.
    Correlations with length use each distinct (group, text) once, lengths in characters.
    """
    chosen = np.asarray(chosen_rewards, dtype=np.float64).reshape(-1)
    rejected = np.asarray(rejected_rewards, dtype=np.float64).reshape(-1)
    if not len(chosen) == len(rejected) == len(comparisons):
        raise ValueError(
            f"chosen_rewards ({len(chosen)}), rejected_rewards ({len(rejected)}) and "
            f"comparisons ({len(comparisons)}) must have the same length"
        )
    ties = np.array([c.tie for c in comparisons], dtype=bool)
    human = np.array([c.source == "human" for c in comparisons], dtype=bool)
    target = human if human.any() else np.ones(len(comparisons), dtype=bool)
    gap = chosen - rejected
    correct = (gap > 0) & ~ties
    rows = [c for c, keep in zip(comparisons, target, strict=True) if keep]
    return {
        "n": len(comparisons),
        "n_target": int(target.sum()),
        "n_ties": int(ties[target].sum()),
        "accuracy_on": "human" if human.any() else "all",
        "accuracy": _mean(correct[target]),
        "mean_reward_gap": _mean(gap[target]),
        "accuracy_by_agreement": _by_agreement(correct[target], rows),
        **_calibration(gap[target], ties[target], bins),
        **_length_bias(chosen, rejected, comparisons, target),
        "by_source": _by_source(correct, comparisons),
        "judge_agreement": _judge_agreement(correct, comparisons),
    }


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _by_agreement(correct: np.ndarray, rows: list[Comparison]) -> list[dict[str, Any]]:
    """Accuracy per share of labellers who agree (rounded to 2 places: 2/3 and 0.67 meet)."""
    levels: dict[float, list[bool]] = defaultdict(list)
    for ok, row in zip(correct, rows, strict=True):
        if row.agreement is not None:
            levels[round(row.agreement, 2)].append(bool(ok))
    return [
        {"agreement": level, "accuracy": sum(oks) / len(oks), "n": len(oks)}
        for level, oks in sorted(levels.items())
    ]


def _calibration(gap: np.ndarray, ties: np.ndarray, bins: int) -> dict[str, Any]:
    predicted = 1.0 / (1.0 + np.exp(-gap))
    observed = np.where(ties, 0.5, 1.0)
    p = np.concatenate([predicted, 1.0 - predicted])
    y = np.concatenate([observed, 1.0 - observed])
    index = np.minimum((p * bins).astype(int), bins - 1)
    curve = []
    ece = 0.0
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        if not count:
            continue
        mean_p, share = float(p[inside].mean()), float(y[inside].mean())
        ece += count / len(p) * abs(mean_p - share)
        curve.append(
            {
                "lower": b / bins,
                "upper": (b + 1) / bins,
                "mean_predicted": mean_p,
                "observed": share,
                "count": count,
            }
        )
    return {"reliability": curve, "ece": ece if len(p) else None}


def _length_bias(
    chosen: np.ndarray, rejected: np.ndarray, comparisons: Sequence[Comparison], target: np.ndarray
) -> dict[str, Any]:
    """Reward against response length, the bias that reward hacking exploits.

    `longer_preferred` is the share of target pairs of unequal length where the model gives
    the longer response the higher reward; `labels_longer_chosen` the same share for the
    labels, so one can tell a model's bias from the data's.
    """
    rewards: dict[tuple[str, str], float] = {}
    for c, rc, rr in zip(comparisons, chosen, rejected, strict=True):
        rewards[(c.group, c.chosen)] = float(rc)
        rewards[(c.group, c.rejected)] = float(rr)
    lengths = np.array([len(text) for _, text in rewards], dtype=np.float64)
    values = np.array(list(rewards.values()))
    model_longer, label_longer = [], []
    for c, rc, rr, keep in zip(comparisons, chosen, rejected, target, strict=True):
        if keep and not c.tie and len(c.chosen) != len(c.rejected) and rc != rr:
            chosen_longer = len(c.chosen) > len(c.rejected)
            model_longer.append((rc > rr) == chosen_longer)
            label_longer.append(chosen_longer)
    return {
        "length_spearman": _correlation(lengths, values, rank=True),
        "length_pearson": _correlation(lengths, values, rank=False),
        "longer_preferred": _mean(np.array(model_longer, dtype=float)),
        "labels_longer_chosen": _mean(np.array(label_longer, dtype=float)),
    }


def _correlation(x: np.ndarray, y: np.ndarray, *, rank: bool) -> float | None:
    """Pearson's r (of average ranks when `rank`: Spearman's rho); None when undefined."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    if rank:
        x, y = _average_ranks(x), _average_ranks(y)
    r = float(np.corrcoef(x, y)[0, 1])
    return None if math.isnan(r) else r


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 0, equal values sharing their mean rank (as scipy's rankdata, minus 1)."""
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def _by_source(correct: np.ndarray, comparisons: Sequence[Comparison]) -> dict[str, Any]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for ok, c in zip(correct, comparisons, strict=True):
        groups[c.source].append(bool(ok))
    return {
        source: {"accuracy": sum(oks) / len(oks), "n": len(oks)}
        for source, oks in sorted(groups.items())
    }


def _judge_agreement(
    correct: np.ndarray, comparisons: Sequence[Comparison]
) -> list[dict[str, Any]]:
    """Share of each judge's pairs where the model prefers what the judge preferred (a
    judge's tie is a disagreement, as ties are wrong in accuracy)."""
    by_source = _by_source(correct, comparisons)
    return [
        {"judge": source.removeprefix("judge:"), "agreement": row["accuracy"], "n": row["n"]}
        for source, row in by_source.items()
        if source.startswith("judge:")
    ]
