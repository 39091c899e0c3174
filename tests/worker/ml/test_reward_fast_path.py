"""The frozen-embedding fast path: Bradley-Terry linear heads and the Embedder."""

from pathlib import Path

import numpy as np
import pytest

from worker.ml.device import pick_device
from worker.ml.rewards import Embedder, fit_heads, head_scores
from worker.ml.tiny import build_tiny_sentence_encoder


def preference_features(n: int, d: int = 12, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(chosen, rejected, true w): labels drawn from Bradley-Terry with a known w."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    p_a = 1 / (1 + np.exp(-(a - b) @ w))
    a_wins = rng.random(n) < p_a
    chosen = np.where(a_wins[:, None], a, b)
    rejected = np.where(a_wins[:, None], b, a)
    return chosen, rejected, w


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def test_fit_heads_recovers_a_known_linear_preference():
    chosen, rejected, w = preference_features(4000)
    heads = fit_heads(chosen, rejected, heads=4, seed=1)
    assert heads.shape == (4, 12) and heads.dtype == np.float32
    assert cosine(heads[0], w) > 0.98
    assert np.linalg.norm(heads[0]) == pytest.approx(np.linalg.norm(w), rel=0.15)
    assert all(cosine(head, w) > 0.95 for head in heads[1:])


def test_bootstrap_heads_spread_less_as_labels_add_up():
    chosen, rejected, _ = preference_features(3000, seed=3)
    few = fit_heads(chosen[:100], rejected[:100], heads=8, seed=0)
    many = fit_heads(chosen, rejected, heads=8, seed=0)
    assert few[1:].std(axis=0).mean() > 2 * many[1:].std(axis=0).mean()
    again = fit_heads(chosen[:100], rejected[:100], heads=8, seed=0)
    assert np.array_equal(few, again)


def test_weights_and_margins_enter_the_fit():
    chosen, rejected, _ = preference_features(500, seed=4)
    noise_c, noise_r, _ = preference_features(500, seed=5)
    clean = fit_heads(chosen, rejected)
    ignored = fit_heads(
        np.vstack([chosen, noise_r]),
        np.vstack([rejected, noise_c]),  # reversed labels, weight 0
        weights=np.r_[np.ones(500), np.zeros(500)],
    )
    assert np.allclose(clean, ignored, atol=1e-3)
    wider = fit_heads(chosen, rejected, margins=np.full(500, 2.0))
    assert np.linalg.norm(wider) > np.linalg.norm(clean)  # a margin asks for bigger gaps


def test_a_warm_start_reaches_the_same_heads():
    chosen, rejected, _ = preference_features(800, seed=6)
    cold = fit_heads(chosen, rejected, heads=3)
    warm = fit_heads(chosen, rejected, heads=3, init=cold * 0.9)
    assert np.allclose(cold, warm, atol=1e-3)


def test_head_scores_are_one_row_per_head():
    heads = np.array([[1.0, 0.0], [0.0, 2.0]])
    features = np.array([[1.0, 1.0], [3.0, -1.0], [0.0, 0.5]])
    assert head_scores(heads, features).tolist() == [[1.0, 3.0, 0.0], [2.0, -2.0, 1.0]]


@pytest.mark.slow  # importing sentence-transformers takes seconds
def test_the_embedder_encodes_each_pair_the_same_way_in_any_batch(tmp_path: Path):
    embedder = Embedder(build_tiny_sentence_encoder(tmp_path / "enc"), device=pick_device("cpu"))
    system = {"role": "system", "content": "be brief"}
    prompts = [
        [system, {"role": "user", "content": "name three primary colours"}],
        "what is the capital of france ?",
    ] * 3
    responses = ["red , yellow and blue", "paris", "the lazy dog", "paris", "red", "a moon"]
    features = embedder.encode(prompts, responses, batch_size=2)
    assert features.shape == (6, 2 * 32) and features.dtype == np.float32
    assert np.allclose(np.linalg.norm(features[:, :32], axis=1), 1.0, atol=1e-5)
    assert np.allclose(features[1], features[3], atol=1e-6)  # same prompt, same response
    assert not np.allclose(features[1], features[4])
    one_by_one = np.vstack(
        [embedder.encode([p], [r]) for p, r in zip(prompts, responses, strict=True)]
    )
    assert np.allclose(features, one_by_one, atol=1e-5)
    assert embedder.encode([], []).shape == (0, 64)
