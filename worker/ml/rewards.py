"""Reward models: preference rows in, a model that scores (prompt, response) out.

Objectives (pure tensor functions, so they can be tested alone):
- `pairwise_loss`: Bradley-Terry, -logsigmoid(r_chosen - r_rejected - margin), with TRL's
  reward centering (`center_rewards_coefficient`) and ties trained toward 0.5.
- `plackett_luce_loss`: listwise, for rankings; equal to Bradley-Terry for two items.
- `span_penalty_loss`: fine-grained feedback (Wu et al. 2023, "Fine-Grained Human Feedback
  Gives Better Rewards"): a per-token reward head whose tokens inside flagged spans are
  pushed to -severity and the rest of a reviewed response to 0. It learns from span labels
  only; its token rewards are added to the preference reward when scoring, so a flagged
  phrase lowers a response's reward wherever it appears (more flagged tokens, lower).

`train` fine-tunes a backbone: a transformers sequence-classification model (one reward per
head) or a sentence-transformers model with a linear head over (prompt, response) features.
Batches are length-grouped and dynamically padded; a batch's chosen, rejected and ranked
responses go through the model in one forward pass (as TRL's RewardTrainer concatenates
chosen and rejected). `load_scorer` reads what `train` wrote.

The fast path for active selection works on frozen embeddings: `Embedder` encodes
(prompt, response) once, `fit_heads` fits Bradley-Terry linear heads in milliseconds and
`head_scores` scores with them; bootstrap heads give an uncertainty estimate.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worker.ml.device import Device, cpu_bf16_is_fast, pick_device, seed_everything
from worker.ml.reward_backbones import (
    BackboneKind,
    EmbeddingNet,
    Message,
    RewardNet,
    TextRow,
    build_net,
)
from worker.ml.reward_metrics import evaluate

Prompt = str | Sequence[Message]
Span = tuple[int, int, float]  # (start, end) characters of a response, severity 0..1
Progress = Callable[[dict[str, Any]], None]
Precision = Literal["auto", "fp32", "bf16"]

PARAMS_FILE = "params.json"
METRICS_FILE = "metrics.json"
CURVE_FILE = "curve.json"
FORMAT_VERSION = 1


# --- Rows ------------------------------------------------------------------------------


def _check_spans(name: str, spans: tuple[Span, ...], text: str) -> None:
    for start, end, severity in spans:
        if not 0 <= start < end <= len(text):
            raise ValueError(f"{name}: span ({start}, {end}) is outside the response")
        if not 0.0 <= severity <= 1.0:
            raise ValueError(f"{name}: severity {severity} is not between 0 and 1")


def _check_source(name: str, source: str) -> None:
    if source != "human" and not (source.startswith("judge:") and len(source) > 6):
        raise ValueError(f"{name}.source must be 'human' or 'judge:<name>', not {source!r}")


@dataclass(frozen=True)
class Comparison:
    """One pairwise preference, built from an export row.

    `group` is the prompt key: the held-out split never puts one group on both sides.
    `margin` is the judgment's strength (TRL's `margin` column). A tie counts as wrong in
    accuracy; `TrainConfig.ties` skips it or trains it toward 0.5. `agreement` is the share
    of labellers who agree, for accuracy per agreement level. Penalty spans are character
    ranges of the response that a reviewer flagged, with a severity in [0, 1].
    """

    prompt: list[Message]
    chosen: str
    rejected: str
    group: str
    margin: float = 0.0
    weight: float = 1.0
    source: str = "human"
    tie: bool = False
    agreement: float | None = None
    chosen_penalties: tuple[Span, ...] = ()
    rejected_penalties: tuple[Span, ...] = ()

    def __post_init__(self) -> None:
        if not math.isfinite(self.margin):
            raise ValueError("Comparison.margin must be finite")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError("Comparison.weight must be finite and >= 0")
        if self.agreement is not None and not 0.0 <= self.agreement <= 1.0:
            raise ValueError("Comparison.agreement must be between 0 and 1")
        _check_source("Comparison", self.source)
        _check_spans("Comparison.chosen_penalties", self.chosen_penalties, self.chosen)
        _check_spans("Comparison.rejected_penalties", self.rejected_penalties, self.rejected)


@dataclass(frozen=True)
class Ranking:
    """Listwise feedback: `responses` best first (trained with Plackett-Luce)."""

    prompt: list[Message]
    responses: tuple[str, ...]
    group: str
    weight: float = 1.0
    source: str = "human"

    def __post_init__(self) -> None:
        if len(self.responses) < 2:
            raise ValueError("Ranking.responses needs at least two responses")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError("Ranking.weight must be finite and >= 0")
        _check_source("Ranking", self.source)


def as_messages(prompt: Prompt) -> list[Message]:
    """A chat prompt as messages: a plain-text prompt becomes one user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def pairs_from_ratings(
    prompt: Prompt,
    ratings: Mapping[str, Sequence[float]],
    *,
    group: str,
    source: str = "human",
    weight: float = 1.0,
    margin_scale: float = 1.0,
    keep_ties: bool = False,
) -> list[Comparison]:
    """Rated responses of one prompt (response -> its ratings) as pairwise comparisons.

    The higher mean rating wins; the margin is the gap of the means times `margin_scale`
    (pass 1 / (max - min) of the scale to get margins in [0, 1]). The agreement is the share
    of (rating of a, rating of b) comparisons that go the winner's way, ties counting half,
    as the export computes it. Equal means give a tie, kept only with `keep_ties`.
    """
    scored = [(text, list(values)) for text, values in ratings.items() if len(values)]
    messages = as_messages(prompt)
    pairs = []
    for (a, ra), (b, rb) in itertools.combinations(scored, 2):
        gap = float(np.mean(ra) - np.mean(rb))
        if gap == 0 and not keep_ties:
            continue
        chosen, rejected, rc, rr = (a, b, ra, rb) if gap >= 0 else (b, a, rb, ra)
        votes = [1.0 if x > y else 0.5 if x == y else 0.0 for x in rc for y in rr]
        pairs.append(
            Comparison(
                prompt=messages,
                chosen=chosen,
                rejected=rejected,
                group=group,
                margin=abs(gap) * margin_scale,
                weight=weight,
                source=source,
                tie=gap == 0,
                agreement=float(np.mean(votes)),
            )
        )
    return pairs


def split_by_group(
    items: Sequence[Any], held_out_share: float, seed: int
) -> tuple[list[Any], list[Any]]:
    """(train, held-out) with every `.group` wholly on one side.

    Groups are drawn in a seeded random order into the held-out side until it holds
    `held_out_share` of the items; with two or more groups and a share above 0 both sides
    get at least one group. Item order is kept within each side.
    """
    if not 0.0 <= held_out_share < 1.0:
        raise ValueError("held_out_share must be in [0, 1)")
    sizes: dict[str, int] = {}
    for item in items:
        sizes[item.group] = sizes.get(item.group, 0) + 1
    groups = sorted(sizes)
    if held_out_share == 0 or len(groups) < 2:
        return list(items), []
    order = np.random.default_rng(seed).permutation(len(groups))
    wanted = held_out_share * len(items)
    held: set[str] = set()
    count = 0
    for index in order[:-1]:  # the last group always stays in training
        if held and count >= wanted:
            break
        held.add(groups[index])
        count += sizes[groups[index]]
    train = [item for item in items if item.group not in held]
    return train, [item for item in items if item.group in held]


# --- Objectives ------------------------------------------------------------------------


def pairwise_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    *,
    weight: torch.Tensor | None = None,
    tie: torch.Tensor | None = None,
    center_rewards_coefficient: float | None = None,
) -> torch.Tensor:
    """Bradley-Terry loss, mean over rows (and heads, when rewards are (n, heads)).

    -logsigmoid(chosen - rejected - margin) as TRL's RewardTrainer: a margin asks for a
    larger gap on strong judgments. A tie (bool per row) is trained toward P = 0.5, its margin
    ignored. `weight` multiplies each row's loss (shape broadcastable to the rewards).
    Centering adds coefficient * mean((chosen + rejected)^2), which keeps rewards near 0
    since Bradley-Terry only fixes their differences (Eisenstein et al. 2023, TRL).
    """
    gap = chosen - rejected
    if margin is not None:
        gap = gap - _column(margin, gap)
    loss = -F.logsigmoid(gap)
    if tie is not None:
        raw = chosen - rejected
        tie_loss = -0.5 * (F.logsigmoid(raw) + F.logsigmoid(-raw))
        loss = torch.where(_column(tie, gap), tie_loss, loss)
    if weight is not None:
        loss = loss * _column(weight, gap)
    loss = loss.mean()
    if center_rewards_coefficient:
        loss = loss + center_rewards_coefficient * ((chosen + rejected) ** 2).mean()
    return loss


def plackett_luce_loss(rewards: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of each ranking under Plackett-Luce, per ranking.

    rewards: (m, K) or (m, K, heads), each row's first `lengths[i]` entries best first, the
    rest padding. The likelihood picks the best of the remaining items at each place:
    prod_j exp(r_j) / sum_{l >= j} exp(r_l). For two items it is Bradley-Terry.
    Returns (m,) or (m, heads).
    """
    positions = torch.arange(rewards.shape[1], device=rewards.device)
    valid = positions[None, :] < lengths[:, None]
    if rewards.dim() == 3:
        valid = valid[..., None]
    masked = rewards.masked_fill(~valid, float("-inf"))
    # log sum_{l >= j} exp(r_l): a cumulative logsumexp from the end.
    tail = torch.logcumsumexp(masked.flip(1), dim=1).flip(1)
    terms = torch.where(valid, masked - tail, torch.zeros_like(rewards))
    return -terms.sum(dim=1)


def span_penalty_loss(
    token_rewards: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Squared distance of reviewed tokens' rewards to their targets (-severity inside a
    flagged span, 0 elsewhere in a reviewed response), averaged over the flagged tokens and
    over the clean ones apart: flagged tokens are few, and a plain mean would let the clean
    majority hold every token reward near 0. 0 when nothing was reviewed."""
    squared = (token_rewards - targets) ** 2
    flagged = mask * (targets < 0)
    clean = mask * (targets >= 0)
    loss = torch.zeros((), device=token_rewards.device)
    for part in (flagged, clean):
        loss = loss + (squared * part).sum() / part.sum().clamp(min=1)
    return loss


def token_penalty_targets(offsets: np.ndarray, spans: Iterable[Span]) -> np.ndarray:
    """Target reward per token: -severity where a token overlaps a flagged span (the
    highest severity if several), 0 elsewhere. `offsets` are (start, end) characters of
    each token within the response, (-1, -1) for tokens outside it."""
    targets = np.zeros(len(offsets), dtype=np.float32)
    starts, ends = offsets[:, 0], offsets[:, 1]
    for start, end, severity in spans:
        inside = (starts >= 0) & (starts < end) & (ends > start)
        targets[inside] = np.minimum(targets[inside], -severity)
    return targets


def _column(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-row values shaped to broadcast over (n,) or (n, heads) rewards."""
    return values if values.dim() == like.dim() else values.view(-1, *[1] * (like.dim() - 1))


# --- Training --------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Settings of one training job (stored as its params and in params.json).

    backbone: a local directory, of a transformers sequence-classification model (or any
    model AutoModelForSequenceClassification can wrap: num_labels = heads, a fresh head)
    or of a sentence-transformers model (backbone_kind="embedding").
    use_margin: subtract each pair's margin in the loss. center_rewards_coefficient: TRL's
    (0.01 in its docs), None or 0 for off. span_penalty: weight of the token-level penalty
    loss (0 = no token head). judge_weight: weight of judge labels relative to human ones
    (0 = human labels only). ties: "skip" or "half" (trained toward P = 0.5).
    batch_size counts pairs or rankings per forward pass; an optimizer step sees
    batch_size * gradient_accumulation_steps of them. Linear decay after warmup, AdamW.
    eval_steps: optimizer steps between held-out evaluations (0 = once per epoch).
    patience: evaluations without improvement of `early_stopping_metric` before stopping,
    then the best weights are restored; 0 trains all epochs and keeps the last weights.
    heads: reward heads; head 0 learns from all rows, the others from Poisson(1) bootstrap
    weights, so their spread is an uncertainty estimate.
    precision: "auto" is bf16 autocast where bf16 is fast (CUDA, CPUs with AMX), else fp32;
    it applies to training, evaluation and the scorer.
    """

    backbone: str
    backbone_kind: BackboneKind = "sequence-classification"
    use_margin: bool = True
    center_rewards_coefficient: float | None = None
    span_penalty: float = 0.0
    judge_weight: float = 1.0
    ties: Literal["skip", "half"] = "skip"
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    max_epochs: int = 3
    max_length: int = 512
    held_out_share: float = 0.1
    eval_steps: int = 0
    eval_batch_size: int = 64
    patience: int = 2
    early_stopping_metric: Literal["loss", "accuracy"] = "loss"
    seed: int = 0
    heads: int = 1
    precision: Precision = "auto"

    def __post_init__(self) -> None:
        positive = ("batch_size", "gradient_accumulation_steps", "max_epochs", "heads")
        for name in (*positive, "max_length", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1")
        for name in ("span_penalty", "judge_weight", "weight_decay", "eval_steps", "patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0")
        if not self.learning_rate > 0:
            raise ValueError("TrainConfig.learning_rate must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("TrainConfig.warmup_ratio must be in [0, 1)")
        if not 0 <= self.held_out_share < 1:
            raise ValueError("TrainConfig.held_out_share must be in [0, 1)")
        if self.ties not in ("skip", "half"):
            raise ValueError("TrainConfig.ties must be 'skip' or 'half'")
        if self.early_stopping_metric not in ("loss", "accuracy"):
            raise ValueError("TrainConfig.early_stopping_metric must be 'loss' or 'accuracy'")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError("TrainConfig.precision must be 'auto', 'fp32' or 'bf16'")
        if self.backbone_kind not in ("sequence-classification", "embedding"):
            raise ValueError(
                "TrainConfig.backbone_kind must be sequence-classification or embedding"
            )


@dataclass
class TrainResult:
    """What `train` measured. `held_out` holds the held-out pairs (rankings expanded into
    their pairs) with the final model's rewards, so `evaluate` can be rerun or sliced."""

    metrics: dict[str, Any]
    curve: list[dict[str, Any]]
    n_train: int
    n_held_out: int
    held_out: list[Comparison] = field(default_factory=list)
    held_out_chosen: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    held_out_rejected: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


@dataclass
class _Item:
    """A training unit: a pair (rows = chosen, rejected) or a ranking (rows best first)."""

    rows: tuple[int, ...]
    weight: float
    listwise: bool = False
    margin: float = 0.0
    tie: bool = False
    penalties: tuple[tuple[Span, ...], ...] = ()
    bootstrap: np.ndarray | None = None  # (heads,) multipliers of the weight


def ranking_pairs(ranking: Ranking) -> list[Comparison]:
    """Every (better, worse) pair of a ranking, for evaluation on pairwise metrics."""
    return [
        Comparison(
            prompt=ranking.prompt,
            chosen=better,
            rejected=worse,
            group=ranking.group,
            weight=ranking.weight,
            source=ranking.source,
        )
        for better, worse in itertools.combinations(ranking.responses, 2)
    ]


def _label_weight(source: str, weight: float, judge_weight: float) -> float:
    return weight * judge_weight if source.startswith("judge:") else weight


class _Texts:
    """Distinct (prompt, response) texts of a data set, tokenized once."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, str], int] = {}
        self.prompts: list[list[Message]] = []
        self.responses: list[str] = []

    def add(self, prompt: list[Message], response: str) -> int:
        key = (json.dumps(prompt, ensure_ascii=False), response)
        if key not in self.index:
            self.index[key] = len(self.prompts)
            self.prompts.append(prompt)
            self.responses.append(response)
        return self.index[key]


def _training_items(
    comparisons: Sequence[Comparison],
    rankings: Sequence[Ranking],
    config: TrainConfig,
    texts: _Texts,
    rng: np.random.Generator,
) -> list[_Item]:
    items = []
    for c in comparisons:
        weight = _label_weight(c.source, c.weight, config.judge_weight)
        if weight == 0 or (c.tie and config.ties == "skip"):
            continue
        items.append(
            _Item(
                (texts.add(c.prompt, c.chosen), texts.add(c.prompt, c.rejected)),
                weight,
                False,
                c.margin if config.use_margin else 0.0,
                c.tie,
                (c.chosen_penalties, c.rejected_penalties),
            )
        )
    for r in rankings:
        weight = _label_weight(r.source, r.weight, config.judge_weight)
        if weight:
            rows = tuple(texts.add(r.prompt, text) for text in r.responses)
            items.append(_Item(rows, weight, listwise=True))
    for item in items:
        # Head 0 sees every row once; the others a Poisson(1) bootstrap (Oza and Russell).
        item.bootstrap = np.concatenate([[1.0], rng.poisson(1.0, config.heads - 1)])
    return items


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, mega: int = 50
) -> list[np.ndarray]:
    """Batches of similar lengths in random order, as transformers' LengthGroupedSampler:
    shuffle, sort within windows of `mega` batches, cut, shuffle the batches. Padding is
    then a few tokens a row instead of up to the longest text of a random batch."""
    order = rng.permutation(len(lengths))
    batches = []
    window = batch_size * mega
    for begin in range(0, len(order), window):
        chunk = order[begin : begin + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _batch_loss(
    net: RewardNet, rows: list[TextRow], items: list[_Item], config: TrainConfig
) -> torch.Tensor:
    """Loss of a batch of items: one forward pass over the distinct rows they name."""
    slots: dict[int, int] = {}
    for item in items:
        for row in item.rows:
            slots.setdefault(row, len(slots))
    batch_rows = [rows[index] for index in slots]
    rewards, token_rewards = net(batch_rows)
    device = rewards.device
    pairs = [item for item in items if not item.listwise]
    lists = [item for item in items if item.listwise]
    boot = torch.tensor(
        np.stack([item.bootstrap * item.weight for item in (*pairs, *lists)]),
        dtype=torch.float32,
        device=device,
    )
    total = torch.zeros((), device=device)
    if pairs:
        chosen = rewards[[slots[item.rows[0]] for item in pairs]]
        rejected = rewards[[slots[item.rows[1]] for item in pairs]]
        margin = torch.tensor([item.margin for item in pairs], device=device)
        tie = torch.tensor([item.tie for item in pairs], device=device)
        # pairwise_loss averages over its rows: rescale to this batch's share of items.
        total = total + pairwise_loss(
            chosen,
            rejected,
            margin,
            weight=boot[: len(pairs)],
            tie=tie,
            center_rewards_coefficient=config.center_rewards_coefficient,
        ) * (len(pairs) / len(items))
    if lists:
        width = max(len(item.rows) for item in lists)
        index = torch.zeros((len(lists), width), dtype=torch.long, device=device)
        for i, item in enumerate(lists):
            index[i, : len(item.rows)] = torch.tensor([slots[r] for r in item.rows])
        lengths = torch.tensor([len(item.rows) for item in lists], device=device)
        listwise = plackett_luce_loss(rewards[index], lengths) * boot[len(pairs) :]
        total = total + listwise.sum() / len(items) / net.heads
    if token_rewards is not None and config.span_penalty:
        total = total + config.span_penalty * _span_loss(token_rewards, batch_rows, slots, items)
    return total


def _span_loss(
    token_rewards: torch.Tensor, rows: list[TextRow], slots: dict[int, int], items: list[_Item]
) -> torch.Tensor:
    targets = torch.zeros_like(token_rewards)
    mask = torch.zeros_like(token_rewards)
    for item in items:
        for row, spans in zip(item.rows, item.penalties, strict=False):
            if spans:
                slot = slots[row]
                offsets = rows[slot].offsets
                length = len(offsets)
                targets[slot, :length] = torch.from_numpy(token_penalty_targets(offsets, spans))
                mask[slot, :length] = torch.from_numpy((offsets[:, 0] >= 0).astype(np.float32))
    return span_penalty_loss(token_rewards, targets, mask)


@torch.inference_mode()
def _rewards(
    net: RewardNet, rows: list[TextRow], batch_size: int, device: Device, precision: Precision
) -> np.ndarray:
    """Rewards (heads, n) of rows, batched longest first with dynamic padding."""
    out = np.zeros((net.heads, len(rows)), dtype=np.float32)
    order = np.argsort([-row.length for row in rows], kind="stable")
    with _autocast(device, precision):
        for begin in range(0, len(order), batch_size):
            chunk = order[begin : begin + batch_size]
            rewards = net.reward([rows[i] for i in chunk])
            out[:, chunk] = rewards.float().cpu().numpy().T
    return out


def _autocast(device: Device, precision: Precision) -> Any:
    """bf16 autocast (weights stay fp32 for the optimizer) when asked, or with "auto" where
    bf16 matrix products are fast: GPUs with bf16, CPUs with AMX (TRL trains in bf16 by
    default too). Otherwise fp32: emulated CPU bf16 is slower than fp32."""
    fast = device.dtype == torch.bfloat16 if device.type == "cuda" else cpu_bf16_is_fast()
    bf16 = precision == "bf16" or (precision == "auto" and fast)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


class _HeldOut:
    """Held-out pairs and their distinct text rows. Loss and accuracy use the human pairs
    when there are any, all pairs otherwise (as `evaluate`)."""

    def __init__(self, pairs: list[Comparison], texts: _Texts) -> None:
        self.pairs = pairs
        chosen = [texts.add(p.prompt, p.chosen) for p in pairs]
        rejected = [texts.add(p.prompt, p.rejected) for p in pairs]
        self.row_ids = sorted({*chosen, *rejected})
        slot = {row: i for i, row in enumerate(self.row_ids)}
        self.chosen = [slot[row] for row in chosen]
        self.rejected = [slot[row] for row in rejected]
        human = np.array([p.source == "human" for p in pairs], dtype=bool)
        self.target = human if human.any() else np.ones(len(pairs), dtype=bool)
        empty = np.zeros(0, dtype=np.float32)
        self.latest: tuple[np.ndarray, np.ndarray] = (empty, empty)  # of the last evaluation

    def rewards(
        self, net: RewardNet, rows: list[TextRow], config: TrainConfig, device: Device
    ) -> tuple[np.ndarray, np.ndarray]:
        """Head 0's rewards of (chosen, rejected) of every held-out pair."""
        rewards = _rewards(
            net, [rows[i] for i in self.row_ids], config.eval_batch_size, device, config.precision
        )
        return rewards[0, self.chosen], rewards[0, self.rejected]

    def measure(
        self, chosen: np.ndarray, rejected: np.ndarray, config: TrainConfig
    ) -> tuple[float | None, float]:
        """(loss as trained, accuracy with ties wrong) on the target pairs."""
        pairs = [p for p, keep in zip(self.pairs, self.target, strict=True) if keep]
        chosen, rejected = chosen[self.target], rejected[self.target]
        ties = np.array([p.tie for p in pairs], dtype=bool)
        trained = ~ties if config.ties == "skip" else np.ones(len(pairs), dtype=bool)
        loss = None
        if trained.any():
            margin = [p.margin if config.use_margin else 0.0 for p in pairs]
            loss = pairwise_loss(
                torch.from_numpy(chosen[trained]),
                torch.from_numpy(rejected[trained]),
                torch.tensor(margin, dtype=torch.float32)[torch.from_numpy(trained)],
                tie=torch.from_numpy(ties[trained]),
            ).item()
        return loss, float(((chosen > rejected) & ~ties).mean())


class _BestWeights:
    """Early stopping: remembers the weights of the best evaluation so far (on the CPU)."""

    def __init__(self, config: TrainConfig) -> None:
        self.patience = config.patience
        self.key = (
            "held_out_loss" if config.early_stopping_metric == "loss" else "held_out_accuracy"
        )
        self.sign = 1.0 if config.early_stopping_metric == "loss" else -1.0
        self.score = math.inf
        self.step = 0
        self.state: dict[str, torch.Tensor] | None = None
        self.rewards: tuple[np.ndarray, np.ndarray] | None = None  # held-out, at the best
        self.misses = 0

    def update(self, net: nn.Module, point: dict[str, Any], held: _HeldOut) -> bool:
        """Record an evaluation; True when training should stop."""
        if not self.patience or point[self.key] is None:
            return False
        score = self.sign * point[self.key]
        if score < self.score:
            self.score, self.step, self.misses = score, point["step"], 0
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
            self.rewards = held.latest
            return False
        self.misses += 1
        return self.misses >= self.patience


def train(
    comparisons: Sequence[Comparison],
    rankings: Sequence[Ranking],
    config: TrainConfig,
    out_dir: Path,
    progress: Progress | None = None,
    *,
    held_out: Sequence[Comparison] | None = None,
    device: Device | None = None,
) -> TrainResult:
    """Train a reward model and write it, its parameters, metrics and curve to `out_dir`.

    The held-out split is drawn by prompt group (`split_by_group`) unless `held_out` pairs
    are given (then all rows train). `progress` gets {"phase": "train", "step",
    "total_steps", "epoch"} after each optimizer step and {"phase": "eval", **curve point}
    after each evaluation. Raises ValueError when no row is left to train on.
    """
    device = device or pick_device()
    started = time.perf_counter()
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    if held_out is None:
        train_part, held_part = split_by_group(
            [*comparisons, *rankings], config.held_out_share, config.seed
        )
        comparisons = [x for x in train_part if isinstance(x, Comparison)]
        rankings = [x for x in train_part if isinstance(x, Ranking)]
        held_out = [
            pair
            for x in held_part
            for pair in (ranking_pairs(x) if isinstance(x, Ranking) else [x])
        ]
    texts = _Texts()
    items = _training_items(comparisons, rankings, config, texts, rng)
    if not items:
        raise ValueError("no training rows: every comparison is a skipped tie or has weight 0")
    held = _HeldOut(list(held_out), texts)
    net = build_net(
        config.backbone_kind,
        config.backbone,
        heads=config.heads,
        token_head=config.span_penalty > 0,
        trained=False,
    ).to(device.torch)
    rows = net.rows(texts.prompts, texts.responses, config.max_length)
    curve, best, seen = _fit(net, rows, items, held, config, device, rng, progress)
    seconds = time.perf_counter() - started
    # The held-out rewards of the kept weights were computed at their evaluation.
    chosen, rejected = held.latest
    if best.state is not None and best.rewards is not None:
        net.load_state_dict(best.state)
        chosen, rejected = best.rewards
    net.eval()
    last = curve[-1]
    metrics: dict[str, Any] = {
        "held_out": evaluate(chosen, rejected, held.pairs) if held.pairs else None,
        "steps": last["step"],
        "epochs": last["epoch"],
        "best_step": best.step if best.state is not None else last["step"],
        "stopped_early": last["step"] < last["total_steps"],
        "seconds": seconds,
        "pairs_per_second": seen / seconds,
    }
    result = TrainResult(
        metrics=metrics,
        curve=curve,
        n_train=len(items),
        n_held_out=len(held.pairs),
        held_out=held.pairs,
        held_out_chosen=chosen,
        held_out_rejected=rejected,
    )
    _write(out_dir, net, config, result)
    return result


def _fit(
    net: RewardNet,
    rows: list[TextRow],
    items: list[_Item],
    held: _HeldOut,
    config: TrainConfig,
    device: Device,
    rng: np.random.Generator,
    progress: Progress | None,
) -> tuple[list[dict[str, Any]], _BestWeights, int]:
    """The optimisation loop: (learning curve, early-stopping state, pairs seen)."""
    lengths = np.array([max(rows[r].length for r in item.rows) for item in items])
    accumulate = config.gradient_accumulation_steps
    steps_per_epoch = math.ceil(math.ceil(len(items) / config.batch_size) / accumulate)
    total = steps_per_epoch * config.max_epochs
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    warmup = int(config.warmup_ratio * total)

    def schedule(step: int) -> float:  # linear warmup, then linear decay to 0 (TRL's)
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / (total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    eval_every = config.eval_steps or steps_per_epoch
    curve: list[dict[str, Any]] = []
    best = _BestWeights(config)
    step = seen = batches_run = 0
    running = torch.zeros((), device=device.torch)
    net.train()
    for _ in range(config.max_epochs):
        batches = length_grouped_batches(lengths, config.batch_size, rng)
        for number, batch in enumerate(batches):
            chunk = [items[i] for i in batch]
            with _autocast(device, config.precision):
                loss = _batch_loss(net, rows, chunk, config)
            (loss / accumulate).backward()
            running += loss.detach()  # read at evaluations only: no sync per step
            batches_run += 1
            seen += sum(len(item.rows) - 1 for item in chunk)
            if (number + 1) % accumulate and number != len(batches) - 1:
                continue
            if config.max_grad_norm:
                nn.utils.clip_grad_norm_(net.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if progress:
                epoch = step / steps_per_epoch
                progress({"phase": "train", "step": step, "total_steps": total, "epoch": epoch})
            if step % eval_every and step != total:
                continue
            point = _evaluation(net, rows, held, config, device)
            point = {
                "step": step,
                "total_steps": total,
                "epoch": round(step / steps_per_epoch, 4),
                "train_loss": (running / batches_run).item(),
                **point,
            }
            running.zero_()
            batches_run = 0
            curve.append(point)
            if progress:
                progress({"phase": "eval", **point})
            if best.update(net, point, held):
                return curve, best, seen
    return curve, best, seen


def _evaluation(
    net: RewardNet, rows: list[TextRow], held: _HeldOut, config: TrainConfig, device: Device
) -> dict[str, float | None]:
    if not held.pairs:
        return {"held_out_loss": None, "held_out_accuracy": None}
    net.eval()
    held.latest = held.rewards(net, rows, config, device)
    loss, accuracy = held.measure(*held.latest, config)
    net.train()
    return {"held_out_loss": loss, "held_out_accuracy": accuracy}


def _write(out_dir: Path, net: RewardNet, config: TrainConfig, result: TrainResult) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    net.save(out_dir)
    params = {
        "format": FORMAT_VERSION,
        "config": asdict(config),
        "n_train": result.n_train,
        "n_held_out": result.n_held_out,
    }
    for name, value in (
        (PARAMS_FILE, params),
        (METRICS_FILE, result.metrics),
        (CURVE_FILE, result.curve),
    ):
        (out_dir / name).write_text(json.dumps(value, indent=1, ensure_ascii=False))


# --- Scoring ---------------------------------------------------------------------------


class RewardScorer:
    """A trained reward model, loaded by `load_scorer`."""

    def __init__(self, net: RewardNet, config: TrainConfig, device: Device) -> None:
        self.net = net
        self.config = config
        self.device = device

    @property
    def heads(self) -> int:
        return self.net.heads

    def score_heads(
        self, prompts: Sequence[Prompt], responses: Sequence[str], batch_size: int = 32
    ) -> np.ndarray:
        """Rewards of every head, (heads, n) float32."""
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses must have the same length")
        if not responses:
            return np.zeros((self.heads, 0), dtype=np.float32)
        messages = [as_messages(prompt) for prompt in prompts]
        rows = self.net.rows(messages, list(responses), self.config.max_length)
        return _rewards(self.net, rows, batch_size, self.device, self.config.precision)

    def score(
        self, prompts: Sequence[Prompt], responses: Sequence[str], batch_size: int = 32
    ) -> np.ndarray:
        """Reward of each (prompt, response), (n,) float32: head 0, trained on all rows."""
        return self.score_heads(prompts, responses, batch_size)[0]


def load_scorer(out_dir: Path, *, device: Device | None = None) -> RewardScorer:
    """Load what `train` wrote to `out_dir`."""
    params = json.loads((out_dir / PARAMS_FILE).read_text())
    if params.get("format") != FORMAT_VERSION:
        raise ValueError(f"{out_dir}: not a reward model of format {FORMAT_VERSION}")
    config = TrainConfig(**params["config"])
    device = device or pick_device()
    net = build_net(
        config.backbone_kind,
        out_dir,
        heads=config.heads,
        token_head=config.span_penalty > 0,
        trained=True,
    )
    return RewardScorer(net.to(device.torch).eval(), config, device)


# --- Fast path on frozen embeddings ----------------------------------------------------


class Embedder:
    """Features of (prompt, response) from a frozen sentence-transformers model.

    `encode` returns `pair_features` (n, 2d) float32: each distinct prompt and response is
    encoded once, longest first in batches, so a data set is embedded once and the linear
    heads of `fit_heads` can then be refitted thousands of times. fp32 by default, so a
    pair's features do not depend on the batch it was encoded in (bf16 kernels differ
    by batch shape); precision="auto" trades that for speed (see `TrainConfig.precision`).
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: Device | None = None,
        max_length: int = 256,
        precision: Precision = "fp32",
    ) -> None:
        self.device = device or pick_device()
        self.net = EmbeddingNet(model_dir, heads=1, token_head=False, trained=False)
        self.net.to(self.device.torch).eval()
        self.max_length = max_length
        self.precision = precision

    @property
    def dim(self) -> int:
        return self.net.head.in_features

    @torch.inference_mode()
    def encode(
        self, prompts: Sequence[Prompt], responses: Sequence[str], batch_size: int = 64
    ) -> np.ndarray:
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses must have the same length")
        out = np.zeros((len(responses), self.dim), dtype=np.float32)
        if not responses:
            return out
        rows = self.net.rows([as_messages(p) for p in prompts], list(responses), self.max_length)
        order = np.argsort([-row.length for row in rows], kind="stable")
        with _autocast(self.device, self.precision):
            for begin in range(0, len(order), batch_size):
                chunk = order[begin : begin + batch_size]
                features, _, _ = self.net.embed([rows[i] for i in chunk])
                out[chunk] = features.float().cpu().numpy()
        return out


def fit_heads(
    chosen_features: np.ndarray,
    rejected_features: np.ndarray,
    *,
    margins: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    heads: int = 1,
    seed: int = 0,
    l2: float = 1.0,
    init: np.ndarray | None = None,
    max_iter: int = 200,
) -> np.ndarray:
    """Bradley-Terry linear heads (heads, d): P(chosen) = sigmoid(w . (x_c - x_r) - margin).

    Minimises sum_i weight_i * softplus(margin_i - w . (x_c - x_r)_i) + l2 / 2 * |w|^2 for
    every head at once with L-BFGS (the loss is convex). Head 0 fits all rows; head h > 0 a
    bootstrap resample (multinomial counts from `seed`), so the heads' spread measures how
    much the data pins w down. `l2` is a prior precision: its pull fades as rows add up.
    `init` (heads, d) warm-starts a refit after a few new labels.
    """
    from scipy.optimize import minimize  # loaded with the first fit, not on import

    x = np.asarray(chosen_features, dtype=np.float64) - np.asarray(rejected_features, np.float64)
    n, d = x.shape
    if heads < 1:
        raise ValueError("heads must be >= 1")
    if n == 0:
        return np.zeros((heads, d), dtype=np.float32)
    m = np.zeros(n) if margins is None else np.asarray(margins, dtype=np.float64)
    base = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    rng = np.random.default_rng(seed)
    counts = [np.ones(n)] + [rng.multinomial(n, np.full(n, 1.0 / n)) for _ in range(heads - 1)]
    w = np.stack(counts) * base  # (heads, n)

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        theta = flat.reshape(heads, d)
        z = m[None, :] - theta @ x.T  # (heads, n)
        loss = float((w * np.logaddexp(0.0, z)).sum() + 0.5 * l2 * (theta**2).sum())
        sig = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid(z), overflow-free
        grad = -(w * sig) @ x + l2 * theta
        return loss, grad.ravel()

    start = np.zeros(heads * d) if init is None else np.asarray(init, np.float64).ravel()
    # These products are small: BLAS threads cost more than they save (100 ms instead of
    # 4 ms a fit of 500 x 768 on a busy 2-core machine).
    with _blas().limit(limits=1, user_api="blas"):
        fit = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return fit.x.reshape(heads, d).astype(np.float32)


@functools.cache
def _blas() -> Any:
    """The process's thread-pool controller, built once (it scans the loaded libraries)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def head_scores(heads: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Scores (heads, n) of features (n, d) under linear heads (heads, d)."""
    return np.asarray(heads, dtype=np.float32) @ np.asarray(features, dtype=np.float32).T
