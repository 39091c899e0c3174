"""The reward-training benchmark's data and padding figures (the runs themselves take
minutes and are not a test)."""

from __future__ import annotations

import numpy as np

from benchmarks.reward_train import (
    HELPFUL,
    UNHELPFUL,
    generated_pairs,
    padding_share,
    to_comparisons,
)


def helpfulness(text: str) -> int:
    return sum(text.count(s) for s in HELPFUL) - sum(text.count(s) for s in UNHELPFUL)


def test_the_generated_preference_is_in_the_text_and_not_in_the_length():
    rows = generated_pairs(2000, seed=0)
    assert all(helpfulness(r["chosen"]) > helpfulness(r["rejected"]) for r in rows)
    longer = np.mean([len(r["chosen"]) > len(r["rejected"]) for r in rows])
    assert 0.4 < longer < 0.6
    lengths = [len(r["chosen"]) for r in rows]
    assert max(lengths) > 8 * min(lengths)  # padding matters
    assert generated_pairs(50, seed=3) == generated_pairs(50, seed=3)


def test_generated_rows_read_the_same_as_comparisons_without_the_role_labels():
    row = generated_pairs(1, seed=0)[0]
    (pair,) = to_comparisons([row])
    assert row["prompt"] == f"User: {pair.prompt[0]['content']}\n\nAssistant:"
    assert row["chosen"] == f" {pair.chosen}"
    chat = {
        "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        "chosen": [{"role": "assistant", "content": "yes"}],
        "rejected": [{"role": "assistant", "content": "no"}],
        "margin": 2,
    }
    (pair,) = to_comparisons([chat])
    assert (pair.prompt, pair.chosen, pair.rejected, pair.margin) == (
        chat["prompt"],
        "yes",
        "no",
        2.0,
    )


def test_padding_share_counts_what_a_batch_pads_to_its_longest_text():
    lengths = np.array([[10, 10], [10, 30], [40, 40], [40, 40]])
    # One batch of all: 8 texts padded to 40 = 320 computed, 220 real.
    assert padding_share(lengths, 4, grouped=False) == 1 - 220 / 320
    # Batches of two, longest pairs together: (40, 40, 40, 40) and (10, 30, 10, 10).
    assert padding_share(lengths, 2, grouped=True) == 1 - 220 / (4 * 40 + 4 * 30)
