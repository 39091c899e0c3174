"""Active pair selectors and candidate pair formation."""

from collections import Counter
from functools import partial
from itertools import combinations

import numpy as np
import pytest

from worker.ml.selection import (
    SELECTORS,
    Candidates,
    _unrank_pairs,
    candidate_pairs,
    select_disagreement,
    select_dissimilar,
    select_margin,
    select_mix,
    select_prompts,
    select_random,
    select_thompson,
)


def all_pairs(responses_per_prompt: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of each prompt's responses, response rows numbered across prompts."""
    pairs, prompts, first = [], [], 0
    for prompt, n in enumerate(responses_per_prompt):
        for a, b in combinations(range(first, first + n), 2):
            pairs.append((a, b))
            prompts.append(prompt)
        first += n
    return np.array(pairs), np.array(prompts)


@pytest.fixture
def pool() -> Candidates:
    """12 prompts of 5 responses, a 6-head model and 8-d embeddings, all random."""
    rng = np.random.default_rng(7)
    pairs, prompts = all_pairs([5] * 12)
    return Candidates(
        pairs,
        prompts,
        scores=rng.normal(size=(6, 60)),
        embeddings=rng.normal(size=(60, 8)),
        prompt_labels={0: 3, 5: 1},
    )


# --- every selector


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_selector_gives_the_same_batch_for_the_same_seed(pool, name):
    first = SELECTORS[name](pool, 15, np.random.default_rng(3))
    assert first == SELECTORS[name](pool, 15, np.random.default_rng(3))
    assert len({p.index for p in first}) == 15
    assert {p.selector for p in first} == {name}


@pytest.mark.parametrize("select", [select_random, select_thompson])
def test_sampling_selectors_draw_another_batch_with_another_seed(pool, select):
    first = select(pool, 15, np.random.default_rng(3))
    assert first != select(pool, 15, np.random.default_rng(4))


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_selector_asked_for_more_than_there_is_returns_every_pair_once(pool, name):
    picks = SELECTORS[name](pool, len(pool) + 10, np.random.default_rng(0))
    assert sorted(p.index for p in picks) == list(range(len(pool)))


@pytest.mark.parametrize(
    "select, missing",
    [
        (select_margin, "scores"),
        (select_disagreement, "scores"),
        (select_thompson, "scores"),
        (select_dissimilar, "embeddings"),
    ],
)
def test_selector_without_what_it_reads_names_the_missing_field(select, missing):
    pairs, prompts = all_pairs([3])
    with pytest.raises(ValueError, match=rf"^{missing}:"):
        select(Candidates(pairs, prompts), 1, np.random.default_rng(0))


def test_one_head_is_not_enough_for_disagreement():
    pairs, prompts = all_pairs([3])
    single = Candidates(pairs, prompts, scores=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="2\\+ heads"):
        select_disagreement(single, 1, np.random.default_rng(0))


def test_candidates_refuse_mismatched_prompts_and_short_scores():
    pairs, prompts = all_pairs([3])
    with pytest.raises(ValueError, match=r"^prompts:"):
        Candidates(pairs, prompts[:2])
    with pytest.raises(ValueError, match=r"^scores:"):
        Candidates(pairs, prompts, scores=np.zeros((2, 2)))


# --- margin


def test_margin_selector_picks_the_closest_pairs():
    pairs, prompts = all_pairs([5])
    rewards = np.array([[0.0, 0.05, 1.0, 1.3, 3.0]])
    candidates = Candidates(pairs, prompts, scores=rewards)
    picks = select_margin(candidates, 3, np.random.default_rng(0), per_prompt=None)
    assert [tuple(pairs[p.index]) for p in picks] == [(0, 1), (2, 3), (1, 2)]
    assert picks[0].score == pytest.approx(-0.05)
    assert picks[0].reason == "|reward margin| 0.050"


def test_margin_selector_spreads_a_batch_over_prompts_before_a_second_turn():
    pairs, prompts = all_pairs([4, 4, 4])
    rewards = np.array([[0, 0.01, 0.02, 0.03, 0, 1, 2, 3, 0, 2, 4, 6]], dtype=float)
    picks = select_margin(Candidates(pairs, prompts, scores=rewards), 4, np.random.default_rng(0))
    assert sorted(prompts[p.index] for p in picks[:3]) == [0, 1, 2]
    assert prompts[picks[3].index] == 0
    assert [p.score for p in picks[:3]] == pytest.approx([-0.01, -1, -2])


def test_margin_selector_uses_head_zero_only():
    pairs, prompts = all_pairs([3])
    rewards = np.array([[0.0, 0.1, 2.0], [0.0, 5.0, 5.1]])
    picks = select_margin(Candidates(pairs, prompts, scores=rewards), 1, np.random.default_rng(0))
    assert tuple(pairs[picks[0].index]) == (0, 1)


# --- disagreement


def test_disagreement_ranks_high_variance_pairs_first():
    pairs, prompts = all_pairs([4])  # (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    rewards = np.array(
        [
            # 0 and 1 tie under every head: margin 0, no disagreement.
            # 2 against 3: the heads do not agree at all.
            [0.0, 0.0, 3.0, -3.0],
            [0.0, 0.0, -3.0, 3.0],
            [0.0, 0.0, 2.0, -2.0],
            [0.0, 0.0, -2.0, 2.0],
        ]
    )
    candidates = Candidates(pairs, prompts, scores=rewards)
    picks = select_disagreement(
        candidates, 6, np.random.default_rng(0), measure="variance", power=None, per_prompt=None
    )
    assert tuple(pairs[picks[0].index]) == (2, 3)
    assert tuple(pairs[picks[-1].index]) == (0, 1)
    assert picks[-1].score == pytest.approx(0.0)
    assert [p.score for p in picks] == sorted((p.score for p in picks), reverse=True)
    assert {p.selector for p in picks} == {"disagreement-variance"}
    # The margin, reading head 0 alone, would ask about the tie first.
    assert tuple(pairs[select_margin(candidates, 1, np.random.default_rng(0))[0].index]) == (0, 1)


def test_order_disagreement_skips_what_the_heads_agree_on_even_far_apart_responses():
    pairs, prompts = all_pairs([5])
    rewards = np.array(
        [
            # 0 vs 1: the heads agree it is a tie. 0 vs 2: all say 2 is far better, by
            # varying amounts (high variance of the gap, no doubt about the order).
            # 3 vs 4: the heads split on the order.
            [0.0, 0.0, 4.0, 0.5, 0.0],
            [0.0, 0.0, 9.0, 0.0, 0.5],
            [0.0, 0.0, 6.0, 0.6, 0.0],
            [0.0, 0.0, 12.0, 0.0, 0.6],
        ]
    )
    candidates = Candidates(pairs, prompts, scores=rewards)
    picks = select_disagreement(
        candidates, 10, np.random.default_rng(0), power=None, per_prompt=None
    )
    order = [tuple(pairs[p.index]) for p in picks]
    assert order.index((3, 4)) < order.index((0, 2))
    assert order.index((3, 4)) < order.index((0, 1))
    by_pair = {tuple(pairs[p.index]): p.score for p in picks}
    assert by_pair[(0, 1)] == 0.0
    assert by_pair[(0, 2)] < 0.01
    # E[max(0, -g)] for g ~ N(0, sd²) is sd / sqrt(2 pi); here sd² = (0.5² + 0.6²) / 2.
    assert by_pair[(3, 4)] == pytest.approx(np.sqrt(0.305 / (2 * np.pi)))
    assert picks[0].reason == "reward gap +0.00 ± 0.55 over 4 heads"


def test_disagreement_draws_its_batch_in_proportion_to_the_score_squared():
    pairs, prompts = all_pairs([3])  # (0,1) (0,2) (1,2)
    # The two heads mirror each other: every gap has mean 0, and order losses 2 : 1 : 1.
    rewards = np.array([[0.0, -2.0, -1.0], [0.0, 2.0, 1.0]])
    candidates = Candidates(pairs, prompts, scores=rewards)
    first = Counter(
        tuple(pairs[select_disagreement(candidates, 1, np.random.default_rng(seed))[0].index])
        for seed in range(600)
    )
    # Power 2: drawn 4 : 1 : 1.
    assert first[(0, 1)] / 600 == pytest.approx(4 / 6, abs=0.06)
    assert first[(0, 2)] / 600 == pytest.approx(1 / 6, abs=0.05)
    assert first[(1, 2)] / 600 == pytest.approx(1 / 6, abs=0.05)
    for seed in range(20):
        top = select_disagreement(candidates, 1, np.random.default_rng(seed), power=None)
        assert tuple(pairs[top[0].index]) == (0, 1)


# --- Thompson sampling


def test_thompson_sampling_explores_and_favours_likely_best_pairs():
    pairs, prompts = all_pairs([4])
    # Response 0 is best under 6 heads, 1 under 3, 2 under 1; 3 is never best.
    rewards = np.array(
        [[3, 2, 1, 0]] * 6 + [[2, 3, 1, 0]] * 3 + [[2, 1, 3, 0]],
        dtype=float,
    )
    candidates = Candidates(pairs, prompts, scores=rewards)
    counts = Counter(
        tuple(pairs[select_thompson(candidates, 1, np.random.default_rng(seed))[0].index])
        for seed in range(600)
    )
    greedy = (0, 1)  # the two best responses under head 0
    assert counts[greedy] < 600
    assert counts[greedy] > counts[(0, 2)] > counts[(1, 2)]
    assert counts[(0, 3)] + counts[(1, 3)] + counts[(2, 3)] == 0
    # Double TS asks about {a, b} with probability q_a·q_b/(1 - q_a) + q_b·q_a/(1 - q_b),
    # q the share of heads under which a response is best: 0.71, 0.22 and 0.08 here.
    assert counts[greedy] / 600 == pytest.approx(0.707, abs=0.06)
    assert counts[(0, 2)] / 600 == pytest.approx(0.217, abs=0.05)


def test_thompson_sampling_falls_back_to_the_runner_up_when_all_heads_agree():
    pairs, prompts = all_pairs([3])
    rewards = np.array([[3, 2, 1], [3, 1, 2]], dtype=float)
    picks = select_thompson(Candidates(pairs, prompts, scores=rewards), 1, np.random.default_rng(0))
    assert tuple(pairs[picks[0].index]) in {(0, 1), (0, 2)}
    assert picks[0].score == 1.0
    assert picks[0].reason.endswith("against its runner-up")


def test_thompson_sampling_gives_each_prompt_a_turn_before_a_second_pair():
    pairs, prompts = all_pairs([4, 4, 4])
    rng = np.random.default_rng(1)
    candidates = Candidates(pairs, prompts, scores=rng.normal(size=(5, 12)))
    picks = select_thompson(candidates, 5, np.random.default_rng(2))
    assert sorted(prompts[p.index] for p in picks[:3]) == [0, 1, 2]


# --- embedding-dissimilar


def test_dissimilar_selector_picks_the_furthest_pairs():
    pairs, prompts = all_pairs([4])
    embeddings = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.05]])
    candidates = Candidates(pairs, prompts, embeddings=embeddings)
    picks = select_dissimilar(candidates, 2, np.random.default_rng(0), per_prompt=None)
    assert [tuple(pairs[p.index]) for p in picks] == [(0, 3), (1, 3)]
    assert picks[0].score == pytest.approx(1.0 + 1.0 / np.hypot(1.0, 0.05))


# --- prompt level


def test_prompt_selector_favours_uncertain_prompts_with_few_labels():
    pairs, prompts = all_pairs([3, 3, 3, 3])
    rewards = np.array(
        [
            [
                *[0.0, 0.1, 0.3],  # prompt 0: uncertain, no labels
                *[0.0, 0.1, 0.2],  # prompt 1: as uncertain, 6 labels
                *[0.0, 4.0, 8.0],  # prompt 2: sure, no labels
                *[0.0, 0.5, 4.0],  # prompt 3: between
            ]
        ]
    )
    candidates = Candidates(pairs, prompts, scores=rewards, prompt_labels={1: 6})
    picks = select_prompts(candidates, 4, np.random.default_rng(0))
    assert [prompts[p.index] for p in picks] == [0, 3, 1, 2]
    # Within a prompt, its least certain pair.
    assert tuple(pairs[picks[0].index]) == (0, 1)
    assert picks[0].score > picks[1].score > picks[2].score > picks[3].score


def test_prompt_selector_without_a_model_serves_the_least_labelled_prompts():
    pairs, prompts = all_pairs([3, 3, 3])
    candidates = Candidates(pairs, prompts, prompt_labels={0: 2, 1: 1})
    picks = select_prompts(candidates, 3, np.random.default_rng(0), per_prompt=3)
    assert [prompts[p.index] for p in picks] == [2, 2, 2]


# --- mix


def test_mix_keeps_its_random_share_in_every_prefix_and_names_who_chose():
    pairs, prompts = all_pairs([6] * 10)
    rewards = np.random.default_rng(0).normal(size=(1, 60))
    candidates = Candidates(pairs, prompts, scores=rewards)
    margin = select_margin(candidates, len(candidates), np.random.default_rng(0))
    closest = {p.index for p in margin[:40]}
    for seed in range(20):
        picks = select_mix(
            candidates, 20, np.random.default_rng(seed), selector=select_margin, random_share=0.3
        )
        names = [p.selector for p in picks]
        assert Counter(names) == {"random": 6, "margin": 14}
        assert len({p.index for p in picks}) == 20
        for end in range(1, 21):
            assert names[:end].count("random") >= 6 * end // 20
        assert {p.index for p in picks if p.selector == "margin"} <= closest
    uniform = Counter(
        p.index
        for seed in range(200)
        for p in select_mix(
            candidates, 20, np.random.default_rng(seed), selector=select_margin, random_share=0.3
        )
        if p.selector == "random"
    )
    # The random share reaches the pairs the margin selector never asks about.
    assert len(set(uniform) - closest) > 0.8 * (len(candidates) - len(closest))


def test_mix_takes_selector_options_and_refuses_a_share_outside_zero_to_one(pool):
    wide = partial(select_dissimilar, per_prompt=None)
    picks = select_mix(pool, 8, np.random.default_rng(0), selector=wide, random_share=0.5)
    assert Counter(p.selector for p in picks) == {"random": 4, "dissimilar": 4}
    with pytest.raises(ValueError, match=r"^random_share:"):
        select_mix(pool, 8, np.random.default_rng(0), selector=select_random, random_share=1.5)


# --- candidate pairs


def test_candidate_pairs_are_every_pair_of_each_prompt_less_the_existing_ones():
    responses = [(1, 10), (1, 11), (1, 12), (2, 20), (2, 21), (3, 30)]
    rows = candidate_pairs(
        responses,
        exclude=[(12, 10), (20, 21), (11, 20)],
        max_per_prompt=100,
        rng=np.random.default_rng(0),
    )
    assert rows == [(1, 10, 11), (1, 11, 12)]


def test_candidate_pairs_respect_the_cap_and_skip_existing_pairs():
    responses = [(7, r) for r in range(2_000)]  # 1,999,000 possible pairs
    exclude = [(r, r + 1) for r in range(0, 2_000, 2)]
    rows = candidate_pairs(
        responses, exclude=exclude, max_per_prompt=500, rng=np.random.default_rng(0)
    )
    assert len(rows) == len(set(rows)) == 500
    assert all(prompt == 7 and a < b for prompt, a, b in rows)
    assert not {(a, b) for _, a, b in rows} & set(exclude)
    # Drawn across the prompt's responses, not the first few.
    assert len({r for _, a, b in rows for r in (a, b)}) > 600
    again = candidate_pairs(
        responses, exclude=exclude, max_per_prompt=500, rng=np.random.default_rng(0)
    )
    assert rows == again


def test_candidate_pairs_at_the_cap_with_exclusions_keep_all_that_are_left():
    responses = [(1, r) for r in range(5)]  # 10 pairs
    rows = candidate_pairs(
        responses, exclude=[(0, 1), (2, 3)], max_per_prompt=8, rng=np.random.default_rng(0)
    )
    assert len(rows) == 8


def test_pair_ranks_map_back_to_positions_for_large_prompts():
    n = 150_000
    ranks = np.array([0, 1, n - 2, n - 1, n * (n - 1) // 2 - 1, 3_141_592_653, 7_777_777_777])
    i, j = _unrank_pairs(ranks, n)
    assert ((i >= 0) & (i < j) & (j < n)).all()
    assert (i * n - i * (i + 1) // 2 + (j - i - 1) == ranks).all()
    small = _unrank_pairs(np.arange(10), 5)
    assert list(zip(*small, strict=True)) == list(combinations(range(5), 2))
