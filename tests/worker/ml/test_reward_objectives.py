"""The reward objectives as pure tensor functions."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from worker.ml.rewards import (
    pairwise_loss,
    plackett_luce_loss,
    span_penalty_loss,
    token_penalty_targets,
)


def test_margin_shifts_the_pairwise_loss_as_trl_computes_it():
    chosen, rejected = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.0])
    margin = torch.tensor([1.0, 0.5])
    assert pairwise_loss(chosen, rejected).item() == pytest.approx(
        -F.logsigmoid(torch.tensor([1.0, 0.5])).mean().item()
    )
    # Gaps equal to the margins: the loss of a coin flip, higher than without margins.
    assert pairwise_loss(chosen, rejected, margin).item() == pytest.approx(math.log(2))
    assert pairwise_loss(chosen, rejected, margin) > pairwise_loss(chosen, rejected)


def test_centering_adds_the_mean_squared_reward_sum_and_pulls_rewards_to_zero():
    chosen = torch.tensor([3.0, 2.0], requires_grad=True)
    rejected = torch.tensor([1.0, 0.0], requires_grad=True)
    plain = pairwise_loss(chosen, rejected)
    centred = pairwise_loss(chosen, rejected, center_rewards_coefficient=0.01)
    assert (centred - plain).item() == pytest.approx(0.01 * (16 + 4) / 2)
    centred.backward()
    # Both rewards of the first pair sit above 0: centering pushes the pair's sum down.
    assert chosen.grad[0] + rejected.grad[0] > 0


def test_a_tie_is_trained_toward_even_odds_and_ignores_its_margin():
    gap = torch.tensor([0.0, 2.0], requires_grad=True)
    zero = torch.zeros(2)
    loss = pairwise_loss(gap, zero, torch.tensor([5.0, 5.0]), tie=torch.tensor([True, True]))
    loss.backward()
    assert gap.grad[0].item() == pytest.approx(0.0)  # already at P = 0.5
    assert gap.grad[1].item() > 0  # descent lowers the gap toward 0
    two = torch.tensor(2.0)
    expected = (math.log(2) - 0.5 * (F.logsigmoid(two) + F.logsigmoid(-two))) / 2
    assert loss.item() == pytest.approx(expected.item())


def test_a_row_of_weight_zero_does_not_count_and_weights_broadcast_over_heads():
    chosen = torch.tensor([[1.0, 2.0], [-5.0, -5.0]])
    rejected = torch.zeros(2, 2)
    weighted = pairwise_loss(chosen, rejected, weight=torch.tensor([2.0, 0.0]))
    expected = 2 * -F.logsigmoid(torch.tensor([1.0, 2.0])).sum() / 4
    assert weighted.item() == pytest.approx(expected.item())


def test_plackett_luce_of_two_items_is_bradley_terry():
    rewards = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    listwise = plackett_luce_loss(rewards, torch.full((6,), 2))
    assert torch.allclose(listwise, -F.logsigmoid(rewards[:, 0] - rewards[:, 1]))


def test_plackett_luce_by_hand_with_padding_and_heads():
    rewards = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.0, 99.0]])
    loss = plackett_luce_loss(rewards, torch.tensor([3, 2]))
    first = -(2 - torch.logsumexp(torch.tensor([2.0, 1.0, 0.0]), 0)) - (
        1 - torch.logsumexp(torch.tensor([1.0, 0.0]), 0)
    )
    assert loss[0].item() == pytest.approx(first.item())
    assert loss[1].item() == pytest.approx(-F.logsigmoid(torch.tensor(1.0)).item())  # pad ignored
    heads = torch.stack([rewards, -rewards], dim=-1)
    per_head = plackett_luce_loss(heads, torch.tensor([3, 2]))
    assert torch.allclose(per_head[:, 0], loss)
    assert torch.allclose(per_head[:, 1], plackett_luce_loss(-rewards, torch.tensor([3, 2])))


def test_token_targets_cover_tokens_that_overlap_a_flagged_span():
    # Tokens of "the fox ran": [CLS] the fox ran [SEP]; special tokens are outside.
    offsets = np.array([[-1, -1], [0, 3], [4, 7], [8, 11], [-1, -1]])
    targets = token_penalty_targets(offsets, [(5, 6, 0.5), (4, 11, 0.25)])
    assert targets.tolist() == [0.0, 0.0, -0.5, -0.25, 0.0]


def test_span_penalties_lower_the_reward_of_flagged_tokens():
    offsets = np.array([[0, 3], [4, 7], [8, 11], [-1, -1]])
    targets = torch.from_numpy(token_penalty_targets(offsets, [(4, 7, 1.0)]))[None]
    mask = torch.from_numpy((offsets[:, 0] >= 0).astype(np.float32))[None]
    token_rewards = torch.zeros(1, 4, requires_grad=True)
    optimizer = torch.optim.SGD([token_rewards], lr=0.5)
    for _ in range(50):
        optimizer.zero_grad()
        span_penalty_loss(token_rewards, targets, mask).backward()
        optimizer.step()
    values = token_rewards.detach()[0]
    assert values[1].item() == pytest.approx(-1.0, abs=1e-3)  # the flagged token
    assert values[[0, 2, 3]].abs().max().item() < 1e-6  # the rest of the response and padding
    assert span_penalty_loss(torch.zeros(1, 4), targets, torch.zeros(1, 4)).item() == 0.0
