"""The leaderboard's numbers on simulated votes: no database, counts in, ratings out."""

import choix
import numpy as np
import pytest
from scipy.stats import kendalltau

from feedback import leaderboard as lb


def simulate(
    rng: np.random.Generator,
    strengths: np.ndarray,
    prompts: int,
    *,
    pairs_per_prompt: int = 3,
    votes_per_pair: int = 1,
    tie_share: float = 0.0,
) -> lb.Comparisons:
    """Votes drawn from Bradley-Terry with these strengths: random pairs on each prompt."""
    m = len(strengths)
    rows = prompts * pairs_per_prompt
    first = rng.integers(0, m, rows)
    second = (first + rng.integers(1, m, rows)) % m
    ties = rng.binomial(votes_per_pair, tie_share, rows)
    p_first = 1 / (1 + np.exp(strengths[second] - strengths[first]))
    first_wins = rng.binomial(votes_per_pair - ties, p_first)
    return lb.Comparisons(
        n_models=m,
        prompt=np.repeat(np.arange(prompts), pairs_per_prompt),
        first=first,
        second=second,
        first_wins=first_wins.astype(float),
        second_wins=(votes_per_pair - ties - first_wins).astype(float),
        ties=ties.astype(float),
    )


def test_the_fitted_order_is_the_order_of_the_strengths_the_votes_came_from():
    rng = np.random.default_rng(0)
    strengths = np.linspace(-1.5, 1.5, 8)  # 0.43 apart: 60% against the next one
    c = simulate(rng, strengths, 3000, tie_share=0.1)
    fitted = lb.bt_fit(lb.pair_table(c))
    assert list(np.argsort(fitted)) == list(range(8))
    # On the Elo scale, about 400/ln(10) points per unit of strength, mean 1000.
    ratings = lb.elo(fitted)
    assert ratings.mean() == pytest.approx(1000)
    gap = (ratings[-1] - ratings[0]) / (3 * lb.ELO_SCALE)
    assert 0.8 < gap < 1.05  # ties as half wins pull the spread in a little


def test_the_fit_ranks_as_choix_does_on_the_same_votes():
    rng = np.random.default_rng(1)
    strengths = rng.normal(0, 1, 12)
    c = simulate(rng, strengths, 2000)
    votes = [
        (int(a), int(b)) if first_won else (int(b), int(a))
        for a, b, wins, losses in zip(c.first, c.second, c.first_wins, c.second_wins, strict=True)
        for first_won in [True] * int(wins) + [False] * int(losses)
    ]
    theirs = choix.ilsr_pairwise(12, votes, alpha=1e-4)
    ours = lb.bt_fit(lb.pair_table(c))
    assert kendalltau(ours, theirs).statistic == pytest.approx(1.0)
    assert np.abs((ours - ours.mean()) - (theirs - theirs.mean())).max() < 0.05


def test_bootstrap_intervals_cover_the_true_strength_about_95_percent_of_the_time():
    strengths = np.array([-1.0, -0.5, 0.0, 0.3, 0.6, 1.2])
    truth = lb.elo(strengths)
    covered, intervals = 0, 0
    for trial in range(60):
        rng = np.random.default_rng(100 + trial)
        c = simulate(rng, strengths, 150, pairs_per_prompt=2, votes_per_pair=2)
        table = lb.pair_table(c)
        fitted = lb.bt_fit(table)
        samples = lb.elo(lb.bootstrap(table, fitted, resamples=200, seed=trial))
        low, high = lb.percentile_interval(samples, 0.95)
        covered += int(((low <= truth) & (truth <= high)).sum())
        intervals += len(truth)
    assert 0.90 <= covered / intervals <= 0.99


def test_rank_ranges_are_narrow_for_far_apart_models_and_wide_for_close_ones():
    rng = np.random.default_rng(2)
    strengths = np.array([0.0, 0.02, 3.0])  # the first two are all but equal
    c = simulate(rng, strengths, 400)
    table = lb.pair_table(c)
    samples = lb.elo(lb.bootstrap(table, lb.bt_fit(table), resamples=300))
    low, high = lb.rank_interval(samples, 0.95)
    assert (low[2], high[2]) == (1, 1)
    assert (low[0], high[0]) == (2, 3) and (low[1], high[1]) == (2, 3)


def test_a_model_that_never_lost_and_one_that_never_won_stay_finite_at_the_ends():
    # Model 0 beats everyone, model 3 loses to everyone, 1 and 2 split.
    first = np.array([0, 0, 0, 1, 1, 2])
    second = np.array([1, 2, 3, 2, 3, 3])
    c = lb.Comparisons(
        n_models=4,
        prompt=np.arange(6),
        first=first,
        second=second,
        first_wins=np.array([5.0, 5, 5, 2, 5, 5]),
        second_wins=np.array([0.0, 0, 0, 2, 0, 0]),
        ties=np.zeros(6),
    )
    table = lb.pair_table(c)
    ratings = lb.elo(lb.bt_fit(table))
    assert np.isfinite(ratings).all() and ratings.max() < 3000
    assert ratings.argmax() == 0 and ratings.argmin() == 3
    samples = lb.bootstrap(table, lb.bt_fit(table), resamples=100)
    assert np.isfinite(samples).all()


def test_only_ties_give_equal_ratings_and_a_tie_is_half_a_win():
    only_ties = lb.Comparisons(
        n_models=3,
        prompt=np.arange(3),
        first=np.array([0, 1, 2]),
        second=np.array([1, 2, 0]),
        first_wins=np.zeros(3),
        second_wins=np.zeros(3),
        ties=np.array([4.0, 4, 4]),
    )
    assert lb.elo(lb.bt_fit(lb.pair_table(only_ties))) == pytest.approx([1000] * 3)
    # Two ties weigh as one win and one loss.
    as_ties = lb.pair_table(
        lb.Comparisons(
            2,
            np.arange(1),
            np.array([0]),
            np.array([1]),
            np.array([3.0]),
            np.array([1.0]),
            np.array([2.0]),
        )
    )
    as_wins = lb.pair_table(
        lb.Comparisons(
            2,
            np.arange(1),
            np.array([0]),
            np.array([1]),
            np.array([4.0]),
            np.array([2.0]),
            np.array([0.0]),
        )
    )
    assert lb.bt_fit(as_ties) == pytest.approx(lb.bt_fit(as_wins))


def test_both_orders_of_a_pair_fold_together_and_a_model_against_itself_is_left_out():
    c = lb.Comparisons(
        n_models=2,
        prompt=np.array([0, 1, 2]),
        first=np.array([1, 0, 0]),
        second=np.array([0, 1, 0]),
        first_wins=np.array([2.0, 1, 9]),
        second_wins=np.array([3.0, 4, 9]),
        ties=np.array([1.0, 0, 9]),
    )
    table = lb.pair_table(c)
    assert (table.i.tolist(), table.j.tolist()) == ([0], [1])
    assert (table.i_wins[0], table.j_wins[0], table.ties[0]) == (4, 6, 1)
    assert table.n_prompts == 2


def test_a_resample_that_leaves_a_model_out_is_refitted_all_the_same():
    # Model 2 appears on one prompt of twenty: many resamples leave it out.
    rng = np.random.default_rng(3)
    c = simulate(rng, np.array([0.0, 0.5]), 20, pairs_per_prompt=1, votes_per_pair=5)
    c = lb.Comparisons(
        n_models=3,
        prompt=np.append(c.prompt, 20),
        first=np.append(c.first, 2),
        second=np.append(c.second, 0),
        first_wins=np.append(c.first_wins, 3.0),
        second_wins=np.append(c.second_wins, 0.0),
        ties=np.append(c.ties, 0.0),
    )
    table = lb.pair_table(c)
    samples = lb.bootstrap(table, lb.bt_fit(table), resamples=200, seed=4)
    assert np.isfinite(samples).all()
    assert np.isclose(samples[:, 2], 0, atol=1e-3).any()  # left out: at the prior's mean
    low, high = lb.percentile_interval(lb.elo(samples), 0.95)
    assert high[2] - low[2] > high[0] - low[0]


def test_style_control_removes_a_bias_for_length_that_any_model_would_get():
    # Equal models; the longer answer wins 85% of the time; model 3 writes the longest.
    rng = np.random.default_rng(5)
    m, rows = 4, 4000
    first = rng.integers(0, m, rows)
    second = (first + rng.integers(1, m, rows)) % m
    mean_length = np.array([300.0, 500, 700, 1500])
    first_length = rng.gamma(4, mean_length[first] / 4)
    second_length = rng.gamma(4, mean_length[second] / 4)
    first_won = np.where(first_length > second_length, 0.85, 0.15) > rng.random(rows)
    c = lb.Comparisons(
        m, np.arange(rows), first, second, first_won * 1.0, 1.0 - first_won, np.zeros(rows)
    )
    raw = lb.elo(lb.bt_fit(lb.pair_table(c)))
    style = np.zeros((rows, 4))
    first_style, second_style = style.copy(), style.copy()
    first_style[:, 0], second_style[:, 0] = first_length, second_length
    fit = lb.style_fit(c, first_style, second_style)
    adjusted = lb.elo(fit.strengths)
    assert raw.argmax() == 3 and raw.max() - raw.min() > 250
    assert adjusted.max() - adjusted.min() < 0.25 * (raw.max() - raw.min())
    assert fit.coefficients[0] > 1  # longer wins
    assert np.isnan(fit.coefficients[1:]).all()  # the Markdown counts never differed


def test_online_elo_follows_the_order_of_the_votes():
    early = (np.array([0] * 50), np.array([1] * 50), np.ones(50))
    late = (np.array([0] * 50), np.array([1] * 50), np.zeros(50))
    ratings = lb.online_elo([early, late], 2)
    assert ratings[1] > ratings[0]  # the recent losses count most
    assert ratings.sum() == pytest.approx(2000)
    reversed_order = lb.online_elo([late, early], 2)
    assert reversed_order[0] > reversed_order[1]
