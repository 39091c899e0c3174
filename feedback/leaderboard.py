"""Model ratings from pairwise outcomes: numbers in, numbers out (numpy; no Django).

`feedback.selectors.project_leaderboard` counts the outcomes in the database and calls
these functions; tests and the benchmark call them on simulated counts.

Model: Bradley-Terry, P(i beats j) = 1 / (1 + exp(s_j - s_i)), fitted by maximum
likelihood on aggregated counts, a tie counting as half a win for each side (the
"half-win" convention of Chatbot Arena's BT fit, rather than a separate tie model such as
Davidson's). A Gaussian prior of precision `prior` on each strength (L2 penalty) keeps a
model that never lost finite and, since the penalty is centred, makes the strengths sum
to zero (so the Elo-scaled ratings average `ELO_MEAN`). The default is the information
of one tied game against an average model: negligible once a model has a few dozen votes.

Uncertainty: percentile bootstrap over prompts (Chatbot Arena resamples battles; here a
prompt's votes move together, since they share its difficulty). Each resample draws the
prompts with replacement, which weights each prompt's counts by a multinomial count; all
resamples of a batch are aggregated by one sparse product and fitted together, warm
started at the full fit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

ELO_SCALE = 400 / math.log(10)  # Elo points per unit of log-strength
ELO_MEAN = 1000.0
PRIOR = 0.25  # one tied game against an average model: p(1-p) = 1/4
TOLERANCE = 1e-6  # largest change of a log-strength at convergence (~0.0002 Elo)
REFIT_TOLERANCE = 1e-4  # the same for bootstrap refits: 0.02 Elo, far below the intervals
CHORD_STEPS = 30  # fixed-Hessian steps before a refit falls back to Newton's method
# The matrices here are small (models x models): BLAS threads only wait on each other, and
# on a busy machine a 100 x 100 solve took 0.2 s with them instead of 0.2 ms.
_one_blas_thread = threadpool_limits.wrap(limits=1, user_api="blas")
# Threads of the bootstrap's batches (one BLAS thread each): the cores of a small server.
BOOTSTRAP_THREADS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class Comparisons:
    """Counted outcomes: row r says that on prompt `prompt[r]` the response of model
    `first[r]` (shown first, on the left; for a ranking, the better-ranked one) and that
    of model `second[r]` were compared `first_wins[r] + second_wins[r] + ties[r]` times.

    Several rows may share a prompt and a pair (different responses, different tasks).
    `prompt` indexes 0..n_prompts-1 and the models 0..n_models-1.
    """

    n_models: int
    prompt: np.ndarray
    first: np.ndarray
    second: np.ndarray
    first_wins: np.ndarray
    second_wins: np.ndarray
    ties: np.ndarray

    @property
    def games(self) -> np.ndarray:
        return self.first_wins + self.second_wins + self.ties


@dataclass(frozen=True)
class PairTable:
    """The comparisons between two different models, by unordered pair i < j, in total
    and per prompt (what the bootstrap resamples)."""

    n_models: int
    i: np.ndarray  # (K,) the lower model index of each pair
    j: np.ndarray  # (K,)
    i_wins: np.ndarray  # (K,)
    j_wins: np.ndarray  # (K,)
    ties: np.ndarray  # (K,)
    # Per prompt: entry n adds values[n] to cell (prompt_of[n], columns[n]) of the
    # (prompts, 2K) matrix [wins of i, ties as halves | games].
    n_prompts: int
    prompt_of: np.ndarray
    columns: np.ndarray
    values: np.ndarray

    @property
    def wins(self) -> np.ndarray:
        """Of i over j, a tie counting half."""
        return self.i_wins + self.ties / 2

    @property
    def games(self) -> np.ndarray:
        return self.i_wins + self.j_wins + self.ties


def pair_table(c: Comparisons) -> PairTable:
    """Fold both orders of a pair together; a model compared with itself tells nothing."""
    keep = c.first != c.second
    first, second = c.first[keep], c.second[keep]
    low, high = np.minimum(first, second), np.maximum(first, second)
    first_is_low = first == low
    low_wins = np.where(first_is_low, c.first_wins[keep], c.second_wins[keep]).astype(float)
    high_wins = np.where(first_is_low, c.second_wins[keep], c.first_wins[keep]).astype(float)
    ties = c.ties[keep].astype(float)
    codes, pair = np.unique(low * c.n_models + high, return_inverse=True)
    _, prompt_of = np.unique(c.prompt[keep], return_inverse=True)
    k = len(codes)
    return PairTable(
        n_models=c.n_models,
        i=codes // c.n_models,
        j=codes % c.n_models,
        i_wins=np.bincount(pair, weights=low_wins, minlength=k),
        j_wins=np.bincount(pair, weights=high_wins, minlength=k),
        ties=np.bincount(pair, weights=ties, minlength=k),
        n_prompts=int(prompt_of.max()) + 1 if len(prompt_of) else 0,
        prompt_of=np.concatenate([prompt_of, prompt_of]),
        columns=np.concatenate([pair, pair + k]),
        values=np.concatenate([low_wins + ties / 2, low_wins + high_wins + ties]),
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """0.5 * (1 + tanh(x / 2)): no overflow warning for large |x|. In place on one new
    array (the bootstrap calls it on half a million entries a step)."""
    out = np.multiply(x, 0.5)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def _hessian(
    table: PairTable, strengths: np.ndarray, games: np.ndarray, prior: float
) -> np.ndarray:
    """Of the negative log-posterior, (..., M, M) for strengths (..., M) and games (..., K):
    the graph Laplacian weighted by games * p * (1 - p), plus the prior."""
    m = table.n_models
    p = _sigmoid(strengths[..., table.i] - strengths[..., table.j])
    v = games * p * (1 - p)
    hessian = -(
        _scatter(v, table.i * m + table.j, m * m) + _scatter(v, table.j * m + table.i, m * m)
    ).reshape(*v.shape[:-1], m, m)
    diagonal = np.arange(m)
    hessian[..., diagonal, diagonal] = prior - hessian.sum(axis=-1)
    return hessian


def _gradient(
    table: PairTable, strengths: np.ndarray, wins: np.ndarray, games: np.ndarray, prior: float
) -> np.ndarray:
    """Of the log-posterior, (..., M) for strengths (..., M) and counts (..., K)."""
    residual = wins - games * _sigmoid(strengths[..., table.i] - strengths[..., table.j])
    gradient = -prior * strengths
    gradient += _scatter(residual, table.i, table.n_models)
    gradient -= _scatter(residual, table.j, table.n_models)
    return gradient


def _scatter(values: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """out[..., n] = the sum of values[..., k] over the k with index[k] == n."""
    rows = values.reshape(-1, values.shape[-1])
    offsets = (np.arange(rows.shape[0]) * size)[:, None]
    flat = np.bincount((index + offsets).ravel(), weights=rows.ravel(), minlength=len(rows) * size)
    return flat.reshape(*values.shape[:-1], size)


def _newton(
    table: PairTable, strengths: np.ndarray, wins: np.ndarray, games: np.ndarray, prior: float
) -> np.ndarray:
    """Maximise the log-posterior from `strengths` (B, M), for counts (B, K).

    It is concave, and strictly so with the prior; a step longer than 2 in any strength
    is shortened, which keeps Newton from overshooting when a model wins (or loses)
    nearly everything.
    """
    strengths = strengths.copy()
    for _ in range(100):
        gradient = _gradient(table, strengths, wins, games, prior)
        hessian = _hessian(table, strengths, games, prior)
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        longest = np.abs(step).max(axis=-1, keepdims=True)
        step *= np.minimum(1.0, 2.0 / np.maximum(longest, 1e-300))
        strengths += step
        if longest.max() < TOLERANCE:
            return strengths
    raise ArithmeticError("The Bradley-Terry fit did not converge in 100 Newton steps.")


@_one_blas_thread
def bt_fit(table: PairTable, *, prior: float = PRIOR) -> np.ndarray:
    """Log-strengths (M,) of the maximum a posteriori Bradley-Terry fit."""
    start = np.zeros((1, table.n_models))
    return _newton(table, start, table.wins[None], table.games[None], prior)[0]


def elo(strengths: np.ndarray) -> np.ndarray:
    """Log-strengths as Elo-like ratings: 400 points are a factor of 10 in the odds."""
    centred = strengths - strengths.mean(axis=-1, keepdims=True)
    return ELO_MEAN + ELO_SCALE * centred


@_one_blas_thread
def bootstrap(
    table: PairTable,
    strengths: np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 0,
    prior: float = PRIOR,
    batch: int = 100,
) -> np.ndarray:
    """Log-strengths (resamples, M) refitted on prompts drawn with replacement.

    A batch of resamples is a (prompts, batch) matrix of multinomial draw counts; one
    sparse product turns it into each resample's wins and games per pair. Refits start at
    `strengths` (the full fit) and take Newton steps with the full fit's Hessian,
    inverted once (the chord method): a resample's Hessian is close to it, so the error
    shrinks some twentyfold a step for a matrix product instead of a solve. They run in
    float32 to `REFIT_TOLERANCE`; a resample far from the full data (one that leaves a
    model out, in a small project) is finished by Newton's method proper.
    """
    from scipy.sparse import csc_matrix, csr_matrix  # loaded for a leaderboard, not before

    k, m, n = len(table.i), table.n_models, table.n_prompts
    # By prompt (CSC): the product reads the draw counts prompt after prompt and adds into
    # a (pairs, batch) block that stays in cache; by pair (CSR) it jumped about the draw
    # counts and took twice as long.
    counts = csc_matrix(
        (table.values.astype(np.float32), (table.columns, table.prompt_of)), shape=(2 * k, n)
    )
    pairs = np.arange(k)
    signs = np.concatenate([np.ones(k), -np.ones(k)]).astype(np.float32)
    incidence = csr_matrix(
        (signs, (np.concatenate([pairs, pairs]), np.concatenate([table.i, table.j]))),
        shape=(k, m),
    )
    incidence_t = incidence.T.tocsr()
    inverse = np.linalg.inv(_hessian(table, strengths, table.games, prior)).astype(np.float32)
    out = np.empty((m, resamples))

    def refit_batch(start: int, rng: np.random.Generator) -> None:
        size = min(batch, resamples - start)
        # Row b: how often resample b drew each prompt (n draws, 32-bit: faster to draw).
        # One bincount per resample: its n counters stay in cache, where one over the
        # batch did not.
        weights = np.empty((size, n), dtype=np.float32)
        for row, draws in enumerate(rng.integers(0, n, size=(size, n), dtype=np.int32)):
            weights[row] = np.bincount(draws, minlength=n)
        resampled = counts @ np.ascontiguousarray(weights.T)
        wins, games = resampled[:k], resampled[k:]
        current = np.repeat(strengths[:, None].astype(np.float32), size, axis=1)
        active = np.arange(size)
        for _ in range(CHORD_STEPS):
            columns = slice(None) if len(active) == size else active  # a view while all run
            refit = current[:, columns]
            residual = _sigmoid(incidence @ refit)
            residual *= games[:, columns]
            np.subtract(wins[:, columns], residual, out=residual)
            step = inverse @ (incidence_t @ residual - prior * refit)
            current[:, columns] = refit + step
            active = active[np.abs(step).max(axis=0) >= REFIT_TOLERANCE]
            if not len(active):
                break
        else:
            current[:, active] = _newton(
                table,
                current[:, active].T.astype(np.float64),
                wins[:, active].T.astype(np.float64),
                games[:, active].T.astype(np.float64),
                prior,
            ).T
        out[:, start : start + size] = current

    # Each batch draws from its own generator, spawned from `seed`: the result does not
    # depend on which thread runs which batch. The draws, the sparse product and the
    # matrix products release the GIL, so two threads use two cores.
    starts = range(0, resamples, batch)
    generators = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(starts))]
    with ThreadPoolExecutor(max_workers=min(BOOTSTRAP_THREADS, len(starts))) as pool:
        list(pool.map(refit_batch, starts, generators))
    return out.T


def percentile_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the central `level` share of the samples (rows)."""
    tail = (1 - level) / 2
    low, high = np.quantile(samples, [tail, 1 - tail], axis=0)
    return low, high


def ranks(ratings: np.ndarray) -> np.ndarray:
    """1 + the number of models rated strictly higher, along the last axis."""
    return 1 + (ratings[..., None, :] > ratings[..., :, None]).sum(axis=-1)


def rank_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Best and worst rank of each model over the central `level` share of resamples."""
    tail = (1 - level) / 2
    sampled = ranks(samples)
    low = np.quantile(sampled, tail, axis=0, method="lower")
    high = np.quantile(sampled, 1 - tail, axis=0, method="higher")
    return low.astype(int), high.astype(int)


def online_elo(
    chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    n_models: int,
    *,
    k: float = 4.0,
) -> np.ndarray:
    """Elo ratings updated vote by vote, in the order given: chunks of (first, second,
    score of first: 1, 0.5 or 0). K = 4 as Chatbot Arena's online Elo; it depends on the
    order of the votes, which is why the leaderboard ranks by Bradley-Terry instead."""
    ratings = [ELO_MEAN] * n_models
    for first, second, score in chunks:
        for a, b, s in zip(first.tolist(), second.tolist(), score.tolist(), strict=True):
            ra, rb = ratings[a], ratings[b]
            update = k * (s - 1.0 / (1.0 + 10.0 ** ((rb - ra) / 400.0)))
            ratings[a] = ra + update
            ratings[b] = rb - update
    return np.array(ratings)


STYLE_FEATURES = ("length", "headers", "lists", "bold")


@dataclass(frozen=True)
class StyleFit:
    """Bradley-Terry strengths with style covariates (LMSYS's style control).

    `strengths` are the models' log-strengths once the style differences are accounted
    for; `coefficients` the log-odds added per standard deviation of each feature's
    normalised difference (first minus second), with their standard errors (Laplace
    approximation); NaN for a feature that never differs.
    """

    strengths: np.ndarray
    coefficients: np.ndarray
    standard_errors: np.ndarray


@_one_blas_thread
def style_fit(
    c: Comparisons,
    first_style: np.ndarray,
    second_style: np.ndarray,
    *,
    prior: float = PRIOR,
) -> StyleFit:
    """Logistic Bradley-Terry regression with style-feature differences as covariates.

    `first_style`, `second_style`: (R, F) non-negative counts per row's two responses
    (characters, Markdown headers, list items, bold spans). As LMSYS's style control, each
    feature enters as (first - second) / (first + second + 1), standardised over the
    votes, so a coefficient reads as "log-odds per standard deviation". Fitted by Newton
    on the rows (one per prompt and response pair), ties as half wins, with the same
    prior on every parameter.
    """
    first_style = np.asarray(first_style, dtype=np.float64)
    second_style = np.asarray(second_style, dtype=np.float64)
    keep = c.first != c.second
    games = c.games[keep].astype(np.float64)
    wins = c.first_wins[keep] + c.ties[keep] / 2
    difference = (first_style[keep] - second_style[keep]) / (
        first_style[keep] + second_style[keep] + 1
    )
    mean = np.average(difference, axis=0, weights=games)
    spread = np.sqrt(np.average((difference - mean) ** 2, axis=0, weights=games))
    varies = spread > 1e-12  # a feature that never differs explains nothing: left out
    features = (difference[:, varies] - mean[varies]) / spread[varies]
    m, f = c.n_models, features.shape[1]
    first, second = c.first[keep], c.second[keep]
    pair = first * m + second
    params = np.zeros(m + f)
    for _ in range(100):
        strengths, betas = params[:m], params[m:]
        p = _sigmoid(strengths[first] - strengths[second] + features @ betas)
        residual = wins - games * p
        v = games * p * (1 - p)
        gradient = np.concatenate(
            [
                np.bincount(first, residual, m) - np.bincount(second, residual, m),
                features.T @ residual,
            ]
        )
        gradient -= prior * params
        # The Hessian by blocks, as sums over rows: the design matrix (+1 for the first
        # model, -1 for the second, then the features) is never built.
        hessian = np.zeros((m + f, m + f))
        between = np.bincount(pair, v, m * m).reshape(m, m)
        hessian[:m, :m] = -(between + between.T)
        hessian[np.arange(m), np.arange(m)] = np.bincount(first, v, m) + np.bincount(second, v, m)
        weighted = features * v[:, None]
        cross = np.zeros((m, f))
        for k, w in enumerate(weighted.T):
            cross[:, k] = np.bincount(first, w, m) - np.bincount(second, w, m)
        hessian[:m, m:] = cross
        hessian[m:, :m] = cross.T
        hessian[m:, m:] = features.T @ weighted
        hessian[np.diag_indices(m + f)] += prior
        step = np.linalg.solve(hessian, gradient)
        step *= min(1.0, 2.0 / max(np.abs(step).max(), 1e-300))
        params += step
        if np.abs(step).max() < TOLERANCE:
            break
    else:
        raise ArithmeticError("The style-controlled fit did not converge in 100 Newton steps.")
    coefficients = np.full(len(varies), np.nan)
    standard_errors = np.full(len(varies), np.nan)
    coefficients[varies] = params[m:]
    standard_errors[varies] = np.sqrt(np.diag(np.linalg.inv(hessian))[m:])
    return StyleFit(params[:m], coefficients, standard_errors)
