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


def test_leave_one_out_baseline_is_the_mean_of_the_other_samples_of_the_prompt():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.2, 0.4, 0.6, 0.8])  # two prompts, four samples each
    baseline = core.leave_one_out_baseline(rewards, group_size=4)
    assert baseline.tolist() == pytest.approx([1.0 / 3, 2.0 / 3, 0.5, 0.5, 0.6, 1.6 / 3, 1.4 / 3, 0.4])
    # a sample's own reward never enters its baseline: raising it leaves its baseline alone
    raised = rewards.clone()
    raised[0] = 9.0
    assert core.leave_one_out_baseline(raised, 4)[0].item() == pytest.approx(1.0 / 3)
    with pytest.raises(ValueError):
        core.leave_one_out_baseline(rewards, group_size=3)
    with pytest.raises(ValueError):
        core.leave_one_out_baseline(rewards, group_size=1)


def test_rloo_advantages_subtract_the_kl_penalty_then_the_group_baseline():
    scores = torch.tensor([1.0, 0.0, 0.6, 0.2])
    kl = torch.tensor([[1.0, 1.0, 9.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    advantages, sequence = core.rloo_advantages(scores, kl, mask, kl_coef=0.1, group_size=2)
    # padding's KL (the 9.0) does not count; R = score - 0.1 * sum of real-token KL
    assert sequence.tolist() == pytest.approx([0.8, 0.0, 0.4, 0.1])
    # pairs: 0.8 - 0.0, 0.0 - 0.8; 0.4 - 0.1, 0.1 - 0.4; on every real token, 0 on padding
    torch.testing.assert_close(advantages, torch.tensor([[0.8, 0.8, 0.0], [-0.8, -0.8, -0.8],
                                                         [0.3, 0.0, 0.0], [-0.3, -0.3, -0.3]]))


def test_running_moments_match_the_statistics_of_everything_seen():
    moments = core.RunningMoments()
    assert moments.std == 1.0  # nothing seen: whitening leaves the scale alone
    first, second = torch.tensor([0.1, 0.9, 0.5]), torch.tensor([0.3, 0.7, 0.2, 1.0])
    moments.update(first)
    moments.update(second)
    everything = torch.cat([first, second]).double()
    assert moments.count == 7
    assert moments.mean == pytest.approx(everything.mean().item())
    assert moments.std == pytest.approx(everything.std().item())  # unbiased, as torch
    white = moments.whiten(everything)
    assert white.mean().item() == pytest.approx(0.0, abs=1e-9)
    assert white.std().item() == pytest.approx(1.0)


def test_per_step_kl_moves_every_step_within_its_bounds():
    controller = core.PerStepKL(0.05, target=4.0, rate=0.5, min_coef=0.05, max_coef=0.1)
    controller.update(6.0, 16)   # 50% over target: x exp(0.5 * 0.5)
    assert controller.value == pytest.approx(0.05 * math.exp(0.25))
    controller.update(40.0, 16)  # error clipped to +1: x exp(0.5) = 0.106, capped at max_coef
    assert controller.value == pytest.approx(0.1)
    controller.update(2.0, 16)   # 50% under: x exp(-0.25)
    assert controller.value == pytest.approx(0.1 * math.exp(-0.25))
    for _ in range(20):
        controller.update(0.0, 16)
    assert controller.value == pytest.approx(0.05)  # floor
    # the batch size does not matter (Ziegler's controller moves by n_steps / horizon)
    a, b = core.PerStepKL(0.1, 4.0, 0.5), core.PerStepKL(0.1, 4.0, 0.5)
    a.update(5.0, 16)
    b.update(5.0, 4096)
    assert a.value == b.value == pytest.approx(0.1 * math.exp(0.125))
    slow = core.AdaptiveKL(0.1, target=4.0, horizon=10000)
    slow.update(5.0, 16)
    assert slow.value == pytest.approx(0.1 * (1 + 0.2 * 16 / 10000))


def test_repeated_bigram_share():
    assert core.repeated_bigram_share(["great great great"]) == pytest.approx(0.5)
    assert core.repeated_bigram_share(["a fine film with a warm heart"]) == 0.0
    # pooled over texts: 'it is it is' has 3 bigrams, 1 repeated; the other 2 bigrams, none
    assert core.repeated_bigram_share(["It is, it is.", "so good"]) == pytest.approx(1 / 4)
    # a bigram repeated across texts is not a repetition; case is ignored
    assert core.repeated_bigram_share(["very good", "Very Good"]) == 0.0
    assert core.repeated_bigram_share(["one", ""]) == 0.0


def test_token_kl_is_the_exact_kl_of_each_position_and_the_mean_of_the_sampled_log_ratio():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    ref_logits = torch.randn(2, 3, 5)
    ref_logprobs = torch.log_softmax(ref_logits, -1)
    kl = core.token_kl(logits, ref_logprobs)
    p, q = torch.softmax(logits, -1), torch.softmax(ref_logits, -1)
    by_hand = [[sum(p[b, t, v].item() * math.log(p[b, t, v].item() / q[b, t, v].item()) for v in range(5))
                for t in range(3)] for b in range(2)]
    assert kl.tolist() == [pytest.approx(row, abs=1e-6) for row in by_hand]
    assert (kl >= 0).all()
    assert core.token_kl(ref_logits, ref_logprobs).abs().max() < 1e-6  # same distribution: no KL
    # the sampled log-ratio (what the reward penalty and the logged KL use) has the same mean
    samples = torch.distributions.Categorical(logits=logits[0, 0]).sample((200_000,))
    log_ratio = torch.log_softmax(logits[0, 0], -1)[samples] - ref_logprobs[0, 0][samples]
    assert log_ratio.mean().item() == pytest.approx(kl[0, 0].item(), abs=0.01)
