"""Active pair selection: which candidate pairs people should judge next.

Plain functions over arrays, no Django. `candidate_pairs` forms the pairs a project could
ask about from its prompts' responses; a selector reads `Candidates` (those pairs, the
reward model's scores and the responses' embeddings) and returns `Pick`s, best first, each
with its score and a reason a person can read. Every selector has the signature
`select(candidates, k, rng, **options) -> list[Pick]` and takes all its randomness from
`rng`, so a seeded generator gives the same batch.

Scores are Bradley-Terry rewards, `P(a > b) = sigmoid(s_a - s_b)`, one row per head of the
reward model: head 0 is fitted on all labels, the others on bootstrap resamples, so their
spread stands for what the model does not know yet (epistemic uncertainty).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, Protocol

import numpy as np


@dataclass(frozen=True)
class Candidates:
    """The pairs a selector chooses from, with what the selectors read.

    pairs: (m, 2) int, the two responses of each pair as rows of `scores`/`embeddings`.
    prompts: (m,) int, the prompt of each pair (any id, shared by the pairs of a prompt).
    scores: (heads, n) float rewards of the n responses, head 0 fitted on all labels;
        None before there is a model.
    embeddings: (n, d) float embeddings of the responses.
    prompt_labels: labels each prompt has so far, by prompt id (absent: none).
    """

    pairs: np.ndarray
    prompts: np.ndarray
    scores: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    prompt_labels: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)
        prompts = np.asarray(self.prompts, dtype=np.int64)
        if prompts.shape != (len(pairs),):
            raise ValueError(f"prompts: expected {len(pairs)} prompt ids, one per pair.")
        if (pairs[:, 0] == pairs[:, 1]).any():
            raise ValueError("pairs: a pair must hold two different responses.")
        object.__setattr__(self, "pairs", pairs)
        object.__setattr__(self, "prompts", prompts)
        n = int(pairs.max()) + 1 if len(pairs) else 0
        if self.scores is not None:
            scores = np.asarray(self.scores, dtype=np.float64)
            if scores.ndim != 2 or scores.shape[1] < n:
                raise ValueError(f"scores: expected (heads, at least {n}) rewards.")
            object.__setattr__(self, "scores", scores)
        if self.embeddings is not None:
            embeddings = np.asarray(self.embeddings, dtype=np.float64)
            if embeddings.ndim != 2 or embeddings.shape[0] < n:
                raise ValueError(f"embeddings: expected (at least {n}, d) vectors.")
            object.__setattr__(self, "embeddings", embeddings)

    def __len__(self) -> int:
        return len(self.pairs)

    def subset(self, indices: np.ndarray) -> Candidates:
        """The same candidates restricted to `indices` (response rows are kept)."""
        return Candidates(
            self.pairs[indices],
            self.prompts[indices],
            self.scores,
            self.embeddings,
            self.prompt_labels,
        )

    def need_scores(self, selector: str, heads: int = 1) -> np.ndarray:
        if self.scores is None or len(self.scores) < heads:
            raise ValueError(f"scores: {selector} needs a reward model with {heads}+ heads.")
        return self.scores

    def win_probability(self) -> np.ndarray:
        """(heads, m) P(first response of the pair is preferred) under each head."""
        scores = self.need_scores("win_probability")
        return _sigmoid(scores[:, self.pairs[:, 0]] - scores[:, self.pairs[:, 1]])


@dataclass(frozen=True)
class Pick:
    """One chosen pair: its row in `Candidates.pairs`, the selector's score (higher first),
    why, and which selector chose it (a mix records the one each pick came from)."""

    index: int
    score: float
    reason: str
    selector: str


class Selector(Protocol):
    def __call__(self, candidates: Candidates, k: int, rng: np.random.Generator) -> list[Pick]: ...


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _rank_in_prompt(score: np.ndarray, prompts: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Each pair's place among its prompt's pairs by score, 0 for the best."""
    by_prompt = np.lexsort((tiebreak, -score, prompts))
    starts = np.r_[0, np.flatnonzero(np.diff(prompts[by_prompt])) + 1]
    sizes = np.diff(np.r_[starts, len(score)])
    rank = np.empty(len(score), dtype=np.int64)
    rank[by_prompt] = np.arange(len(score)) - np.repeat(starts, sizes)
    return rank


def _ranked(
    score: np.ndarray,
    prompts: np.ndarray,
    k: int,
    rng: np.random.Generator,
    per_prompt: int | None,
    power: float | None = None,
) -> np.ndarray:
    """Indices of the k best scores, ties broken at random.

    With `per_prompt`, a batch takes at most that many pairs of a prompt before every other
    prompt has had its turn: the best pairs of one prompt are often near copies of each
    other (one uncertain response against several), and a batch spread over prompts
    teaches the model more per label.

    With `power`, scores (>= 0) are not taken in order but drawn without replacement with
    probability proportional to score**power (Gumbel top-k). The top k of a batch often
    ask the same question many times over; a draw keeps the high scores likely and spreads
    the batch (stochastic batch acquisition, Kirsch et al. 2023).
    """
    tiebreak = rng.random(len(score))
    if power is not None:
        with np.errstate(divide="ignore"):
            score = power * np.log(score) + rng.gumbel(size=len(score))
    if per_prompt is None:
        return np.lexsort((tiebreak, -score))[:k]
    turn = _rank_in_prompt(score, prompts, tiebreak) // per_prompt
    return np.lexsort((tiebreak, -score, turn))[:k]


# --- Selectors ------------------------------------------------------------------------


def select_random(candidates: Candidates, k: int, rng: np.random.Generator) -> list[Pick]:
    """Uniform pairs: the baseline, and the unbiased share of a mix."""
    chosen = rng.choice(len(candidates), size=min(k, len(candidates)), replace=False)
    return [Pick(int(i), 0.0, "uniform draw", "random") for i in chosen]


def select_margin(
    candidates: Candidates,
    k: int,
    rng: np.random.Generator,
    *,
    per_prompt: int | None = 1,
) -> list[Pick]:
    """Pairs whose rewards under head 0 are closest: the model's least sure answers
    (uncertainty sampling). Score: minus |reward margin|."""
    scores = candidates.need_scores("select_margin")[0]
    margin = np.abs(scores[candidates.pairs[:, 0]] - scores[candidates.pairs[:, 1]])
    chosen = _ranked(-margin, candidates.prompts, k, rng, per_prompt)
    return [
        Pick(int(i), -float(margin[i]), f"|reward margin| {margin[i]:.3f}", "margin")
        for i in chosen
    ]


def select_disagreement(
    candidates: Candidates,
    k: int,
    rng: np.random.Generator,
    *,
    measure: Literal["order", "variance"] = "order",
    power: float | None = 2.0,
    per_prompt: int | None = 1,
) -> list[Pick]:
    """Pairs the heads disagree about most.

    measure "variance": the variance over heads of P(a > b). It grows with how far apart
    the two responses' features are, so it keeps asking about a plainly bad response
    against a good one, long after every head orders them the same way.
    measure "order" (default): the expected loss of ordering the pair as the heads' mean
    does, with the heads' reward gaps taken as a normal N(mu, sigma²):
    sigma·phi(mu/sigma) - |mu|·Phi(-|mu|/sigma), in reward units. It is near 0 when the
    heads agree on the order, and also for a near tie they agree on (a label there is a
    coin toss); it is high where they disagree about which response is better.
    With `power` the batch is drawn with probability proportional to score**power (see
    `_ranked`); None takes the top scores. In benchmarks/label_efficiency.py "order" with
    power 2 needed the fewest labels. Score: the measure.
    """
    scores = candidates.need_scores("select_disagreement", heads=2)
    gaps = scores[:, candidates.pairs[:, 0]] - scores[:, candidates.pairs[:, 1]]
    if measure == "variance":
        p = _sigmoid(gaps)
        score = p.var(axis=0)
        reasons = [f"P(a>b) {lo:.2f}..{hi:.2f}" for lo, hi in zip(p.min(0), p.max(0), strict=True)]
    elif measure == "order":
        score = _expected_order_loss(gaps.mean(axis=0), gaps.std(axis=0))
        reasons = [
            f"reward gap {mu:+.2f} ± {sd:.2f}"
            for mu, sd in zip(gaps.mean(axis=0), gaps.std(axis=0), strict=True)
        ]
    else:
        raise ValueError(f"measure: expected 'order' or 'variance', not {measure!r}.")
    chosen = _ranked(score, candidates.prompts, k, rng, per_prompt, power)
    name = "disagreement" if measure == "order" else "disagreement-variance"
    suffix = f" over {len(scores)} heads"
    return [Pick(int(i), float(score[i]), reasons[i] + suffix, name) for i in chosen]


def _expected_order_loss(mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[max(0, -sign(mu)·g)] for g ~ N(mu, sd²): what ordering by the mean loses."""
    from scipy.special import ndtr  # loaded with the first selection, not on import

    mu = np.abs(mu)
    z = mu / np.maximum(sd, 1e-12)
    return np.maximum(sd * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) - mu * ndtr(-z), 0.0)


def select_thompson(
    candidates: Candidates,
    k: int,
    rng: np.random.Generator,
    *,
    max_tries: int = 30,
) -> list[Pick]:
    """Double Thompson sampling (Dwaracherla et al. 2024, "Efficient Exploration for
    LLMs"): for a prompt, draw a head and take its best response; draw heads again until
    one's best response is another, and ask about that pair.

    A response is first as often as the heads call it best (its posterior probability of
    being best), so pairs of likely-best responses are asked about most, while less sure
    ones still get asked. Prompts take turns in random order, one pair each per turn. After
    `max_tries` draws without a second response, the second is the first draw's best other
    response. Only responses that still have an unpicked candidate pair are considered.
    Score: the share of heads under which the first response is best.
    """
    scores = candidates.need_scores("select_thompson", heads=2)
    open_pairs: dict[int, dict[tuple[int, int], int]] = defaultdict(dict)
    for index, ((a, b), prompt) in enumerate(
        zip(candidates.pairs.tolist(), candidates.prompts.tolist(), strict=True)
    ):
        open_pairs[prompt][(min(a, b), max(a, b))] = index
    picks: list[Pick] = []
    while len(picks) < k and open_pairs:
        for prompt in rng.permutation(sorted(open_pairs)).tolist():
            if len(picks) == k:
                break
            pairs = open_pairs[prompt]
            first, second, share, reason = _thompson_pair(scores, pairs, rng, max_tries)
            picks.append(
                Pick(pairs.pop((min(first, second), max(first, second))), share, reason, "thompson")
            )
            if not pairs:
                del open_pairs[prompt]
    return picks


def _thompson_pair(
    scores: np.ndarray,
    pairs: Mapping[tuple[int, int], int],
    rng: np.random.Generator,
    max_tries: int,
) -> tuple[int, int, float, str]:
    """One double-Thompson draw over a prompt's open pairs: the two responses, the share
    of heads under which the first is best, and the reason."""
    partners: dict[int, set[int]] = defaultdict(set)
    for a, b in pairs:
        partners[a].add(b)
        partners[b].add(a)
    responses = np.array(sorted(partners))
    best = responses[scores[:, responses].argmax(axis=1)]
    head = int(rng.integers(len(scores)))
    first = int(best[head])
    share = float(np.mean(best == first))
    for _ in range(max_tries):
        other = int(rng.integers(len(scores)))
        if int(best[other]) in partners[first]:
            reason = f"best under head {head} against best under head {other}"
            return first, int(best[other]), share, reason
    others = np.array(sorted(partners[first]))
    second = int(others[scores[head, others].argmax()])
    return first, second, share, f"best under head {head} against its runner-up"


def select_dissimilar(
    candidates: Candidates,
    k: int,
    rng: np.random.Generator,
    *,
    per_prompt: int | None = 1,
) -> list[Pick]:
    """Pairs whose responses are furthest apart in embedding space (REAL, Zhang et al.
    2024): two near copies make people guess, two different answers give a clear and
    informative label. Needs no reward model. Score: cosine distance."""
    if candidates.embeddings is None:
        raise ValueError("embeddings: select_dissimilar needs the responses' embeddings.")
    norms = np.linalg.norm(candidates.embeddings, axis=1, keepdims=True)
    unit = candidates.embeddings / np.where(norms > 0, norms, 1.0)
    a, b = candidates.pairs.T
    distance = 1.0 - np.einsum("ij,ij->i", unit[a], unit[b])
    chosen = _ranked(distance, candidates.prompts, k, rng, per_prompt)
    return [
        Pick(int(i), float(distance[i]), f"cosine distance {distance[i]:.3f}", "dissimilar")
        for i in chosen
    ]


def select_prompts(
    candidates: Candidates,
    k: int,
    rng: np.random.Generator,
    *,
    per_prompt: int = 1,
) -> list[Pick]:
    """Prompts that need labels most, then each one's least certain pairs.

    A prompt's need is the mean uncertainty 4·p·(1 - p) of its pairs under head 0 (1 for a
    coin toss, 0 for a sure answer) over 1 + its labels so far, so an uncertain prompt
    with few labels comes first. Without a model every pair counts as a coin toss: the
    prompts with the fewest labels come first. Score: the prompt's need.
    """
    m = len(candidates)
    if candidates.scores is None:
        uncertainty = np.ones(m)
    else:
        p = candidates.win_probability()[0]
        uncertainty = 4.0 * p * (1.0 - p)
    ids, inverse = np.unique(candidates.prompts, return_inverse=True)
    labels = np.array([candidates.prompt_labels.get(int(i), 0) for i in ids], dtype=np.float64)
    mean = np.bincount(inverse, uncertainty) / np.bincount(inverse)
    need = (mean / (1.0 + labels))[inverse]
    tiebreak = rng.random(m)
    turn = _rank_in_prompt(uncertainty, candidates.prompts, tiebreak) // per_prompt
    # Equal needs (a fresh project) keep a prompt's pairs together by the prompt's draw.
    prompt_draw = rng.random(len(ids))[inverse]
    chosen = np.lexsort((tiebreak, -uncertainty, prompt_draw, -need, turn))[:k]
    return [
        Pick(
            int(i),
            float(need[i]),
            f"prompt need {need[i]:.3f} ({int(labels[inverse[i]])} labels), "
            f"pair uncertainty {uncertainty[i]:.2f}",
            "prompt",
        )
        for i in chosen
    ]


def select_mix(
    candidates: Candidates,
    k: int,
    rng: np.random.Generator,
    *,
    selector: Selector,
    random_share: float = 0.25,
) -> list[Pick]:
    """`selector`'s picks with at least `random_share` of the batch drawn uniformly.

    Every selector but random skews the labelled pairs towards what the model finds hard;
    the uniform share is a sample of the candidates as they are, on which accuracy and
    agreement can be measured without that bias. The uniform pairs are drawn from all
    candidates first, the selector picks from the rest, and the two are interleaved so
    that a batch answered only in part still holds its share. Each pick keeps the name of
    the selector that chose it.
    """
    if not 0.0 <= random_share <= 1.0:
        raise ValueError("random_share: expected a share between 0 and 1.")
    k = min(k, len(candidates))
    uniform = select_random(candidates, math.ceil(k * random_share), rng)
    rest = np.setdiff1d(np.arange(len(candidates)), [p.index for p in uniform])
    chosen = [
        Pick(int(rest[p.index]), p.score, p.reason, p.selector)
        for p in selector(candidates.subset(rest), k - len(uniform), rng)
    ]
    picks: list[Pick] = []
    total = len(uniform) + len(chosen)
    taken_uniform = 0
    for position in range(total):
        # Every prefix of the batch holds at least its share of uniform pairs.
        due = math.ceil((position + 1) * len(uniform) / total)
        if taken_uniform < len(uniform) and (
            taken_uniform < due or len(picks) - taken_uniform == len(chosen)
        ):
            picks.append(uniform[taken_uniform])
            taken_uniform += 1
        else:
            picks.append(chosen[len(picks) - taken_uniform])
    return picks


SELECTORS: dict[str, Selector] = {
    "random": select_random,
    "margin": select_margin,
    "disagreement": select_disagreement,
    "disagreement-variance": partial(select_disagreement, measure="variance", power=None),
    "thompson": select_thompson,
    "dissimilar": select_dissimilar,
    "prompt": select_prompts,
}


# --- Candidate pairs ------------------------------------------------------------------


def candidate_pairs(
    responses: Iterable[tuple[int, int]],
    *,
    exclude: Iterable[tuple[int, int]] = (),
    max_per_prompt: int,
    rng: np.random.Generator,
) -> list[tuple[int, int, int]]:
    """The pairs a project could ask about: (prompt id, response id, response id) rows.

    responses: (prompt id, response id) rows. exclude: response id pairs, in either order,
    already labelled or tasked. Every pair of a prompt's responses not in `exclude`, up to
    `max_per_prompt` per prompt drawn uniformly from them: n candidates make n(n-1)/2
    pairs, so a prompt with thousands would otherwise make millions. Rows come sorted,
    the smaller response id first.
    """
    if max_per_prompt < 1:
        raise ValueError("max_per_prompt: expected at least 1.")
    by_prompt: dict[int, set[int]] = defaultdict(set)
    prompt_of: dict[int, int] = {}
    for prompt, response in responses:
        by_prompt[prompt].add(response)
        prompt_of[response] = prompt
    excluded: dict[int, set[tuple[int, int]]] = defaultdict(set)
    for a, b in exclude:
        if a in prompt_of and prompt_of[a] == prompt_of.get(b):
            excluded[prompt_of[a]].add((min(a, b), max(a, b)))
    rows: list[tuple[int, int, int]] = []
    for prompt in sorted(by_prompt):
        ids = np.array(sorted(by_prompt[prompt]))
        n = len(ids)
        total = n * (n - 1) // 2
        taken = len(excluded[prompt])
        # Draw a few more than the cap so that, once excluded pairs are dropped, the cap
        # is still reached; without a cap to apply, every pair is kept.
        draw = (
            np.arange(total)
            if total - taken <= max_per_prompt
            else np.sort(rng.choice(total, size=min(total, max_per_prompt + taken), replace=False))
        )
        i, j = _unrank_pairs(draw, n)
        kept = [
            (int(a), int(b))
            for a, b in zip(ids[i], ids[j], strict=True)
            if (int(a), int(b)) not in excluded[prompt]
        ]
        if len(kept) > max_per_prompt:
            keep = np.sort(rng.choice(len(kept), size=max_per_prompt, replace=False))
            kept = [kept[t] for t in keep]
        rows.extend((prompt, a, b) for a, b in kept)
    return rows


def _unrank_pairs(t: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (i, j), i < j, of the t-th pairs of n items in the order (0,1), (0,2), ...,
    (1,2), ...: the pairs are drawn by rank, so a capped prompt never lists all of them."""
    t = np.asarray(t, dtype=np.int64)
    # Pairs starting before row i: i*n - i*(i+1)/2; solve for the largest i not past t.
    i = np.floor((2 * n - 1 - np.sqrt((2 * n - 1) ** 2 - 8 * t)) / 2).astype(np.int64)
    # Float rounding can land one row off for large n; step back or forward.
    start = i * n - i * (i + 1) // 2
    i = np.where(start > t, i - 1, i)
    start = i * n - i * (i + 1) // 2
    nxt = start + (n - i - 1)
    i = np.where(t >= nxt, i + 1, i)
    start = i * n - i * (i + 1) // 2
    return i, t - start + i + 1
