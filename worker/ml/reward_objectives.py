"""Reward-model objectives: pure tensor functions, tested alone.

- `pairwise_loss`: Bradley-Terry, -logsigmoid(r_chosen - r_rejected - margin), with TRL's
  reward centering (`center_rewards_coefficient`) and ties trained toward 0.5.
- `plackett_luce_loss`: listwise, for rankings; equal to Bradley-Terry for two items.
- `span_penalty_loss` and `token_penalty_targets`: fine-grained feedback (Wu et al. 2023,
  "Fine-Grained Human Feedback Gives Better Rewards"): per-token rewards pushed to
  -severity inside flagged spans and to 0 elsewhere in a reviewed response.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

Span = tuple[int, int, float]  # (start, end) characters of a response, severity 0..1


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
