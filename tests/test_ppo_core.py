"""PPO arithmetic against values computed by hand."""

import math

import pytest
import torch

from trainer_client.ppo import core


def test_gae_matches_hand_computation():
    # one sequence of 3 tokens, gamma=0.9, lambda=0.8
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.3]])
    mask = torch.ones(1, 3)
    advantages, returns = core.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    d2 = 1.0 + 0.9 * 0.0 - 0.3            # 0.7
    d1 = 0.0 + 0.9 * 0.3 - 0.4            # -0.13
    d0 = 0.0 + 0.9 * 0.4 - 0.5            # -0.14
    a2 = d2
    a1 = d1 + 0.9 * 0.8 * a2              # 0.374
    a0 = d0 + 0.9 * 0.8 * a1              # 0.12928
    assert advantages.tolist()[0] == pytest.approx([a0, a1, a2], abs=1e-6)
    assert returns.tolist()[0] == pytest.approx([a0 + 0.5, a1 + 0.4, a2 + 0.3], abs=1e-6)


def test_gae_ignores_padding_after_the_last_token():
    rewards = torch.tensor([[0.0, 2.0, 0.0]])
    values = torch.tensor([[1.0, 1.0, 9.0]])  # the padded value must not leak back
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    advantages, _ = core.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert advantages.tolist()[0] == pytest.approx([(0 + 1 - 1) + (2 - 1), 2 - 1, 0.0])


def test_kl_penalty_on_every_token_and_score_on_the_last_real_one():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-1.0, -2.0, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards, kl = core.kl_penalized_rewards(torch.tensor([1.0, 0.5]), logprobs, ref, mask, kl_coef=0.1)
    torch.testing.assert_close(kl, torch.tensor([[0.5, -1.0, 0.0], [0.0, 1.0, 0.0]]))
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 0.1, 1.0], [0.0, -0.1 + 0.5, 0.0]]))


def test_clipped_policy_loss():
    old = torch.zeros(1, 2)
    new = torch.tensor([[math.log(1.5), math.log(0.5)]])  # ratios 1.5 and 0.5
    advantages = torch.tensor([[1.0, -1.0]])
    mask = torch.ones(1, 2)
    loss, stats = core.policy_loss(new, old, advantages, mask, clip=0.2)
    # token 1: max(-1*1.5, -1*1.2) = -1.2 (clipped); token 2: max(1*0.5, 1*0.8) = 0.8 (clipped)
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert stats["clipfrac"] == pytest.approx(1.0)


def test_unclipped_inside_the_trust_region():
    new = torch.tensor([[math.log(1.1)]])
    loss, stats = core.policy_loss(new, torch.zeros(1, 1), torch.tensor([[2.0]]), torch.ones(1, 1), clip=0.2)
    assert loss.item() == pytest.approx(-2.2) and stats["clipfrac"] == 0.0


def test_clipped_value_loss():
    old = torch.tensor([[0.0, 0.0]])
    new = torch.tensor([[1.0, 0.1]])
    returns = torch.tensor([[1.0, 1.0]])
    loss, _ = core.value_loss(new, old, returns, torch.ones(1, 2), clip=0.2)
    # token 1: max((1-1)^2, (0.2-1)^2) = 0.64; token 2: max((0.1-1)^2, (0.1-1)^2) = 0.81
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81) / 2)


def test_whiten_and_token_logprobs_and_entropy():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    white = core.whiten(x, mask)
    assert core.masked_mean(white, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert core.masked_var(white, mask).item() == pytest.approx(1.0, abs=1e-4)
    assert white[0, 3].item() == 0.0
    logits = torch.log(torch.tensor([[[0.25, 0.75]]]))
    assert core.token_logprobs(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.75))
    assert core.entropy(logits).item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))


def test_adaptive_kl_moves_toward_target():
    controller = core.AdaptiveKL(0.1, target=6.0, horizon=10000)
    controller.update(12.0, 1000)  # too much KL: error clipped to +0.2
    assert controller.value == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    controller.update(3.0, 1000)   # too little: error -0.5 clipped to -0.2
    assert controller.value == pytest.approx(0.1 * 1.02 * 0.98)
