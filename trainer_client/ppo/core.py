"""PPO's arithmetic, as pure functions on tensors (Schulman et al. 2017; the RLHF
variant of Ziegler et al. 2019 / Stiennon et al. 2020).

All tensors are over response tokens only, shape (batch, response_length), with
`mask` 1 on real response tokens (up to and including EOS) and 0 on padding.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise to unit variance over the real tokens (and zero mean unless shift_mean=False)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) under `logits` (batch, length, vocab) -> (batch, length)."""
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-token entropy of the policy's distribution -> (batch, length)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def token_kl(logits: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Exact KL(pi || pi_ref) of each position's next-token distribution, summed over the
    whole vocabulary: `logits` (batch, length, vocab) of the policy, `ref_logprobs` the
    reference's log-softmax of the same shape -> (batch, length). Its expectation over the
    policy's samples is the per-token log-ratio's, with far less variance, so as a loss
    term it pulls toward the reference on every token rather than only on the sampled one."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return (logp.exp() * (logp - ref_logprobs)).sum(-1)


def kl_penalized_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token reward: -kl_coef * (log pi - log pi_ref) on every token, plus the
    sequence's score on its last real token. Returns (rewards, per-token kl)."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(1) - 1).clamp(min=0).long()
    rewards[torch.arange(len(scores)), last] += scores
    return rewards * mask, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation; the value after the last real token is 0.
    Returns (advantages, returns = advantages + values)."""
    values = values * mask
    length = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip: float) -> tuple[torch.Tensor, dict]:
    """The clipped surrogate objective, as a loss to minimise."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    stats = {
        "clipfrac": masked_mean((clipped > unclipped).float(), mask).item(),
        "approx_kl": 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask).item(),
    }
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float) -> tuple[torch.Tensor, dict]:
    """Clipped value loss: the value may move at most `clip` from its rollout estimate."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped_values - returns) ** 2), mask)
    return loss, {"value_clipfrac": masked_mean(((values - returns) ** 2 < (clipped_values - returns) ** 2).float(), mask).item()}


class FixedKL:
    def __init__(self, coef: float):
        self.value = coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKL:
    """Ziegler et al. 2019: move the coefficient so the KL tracks `target`."""

    def __init__(self, coef: float, target: float, horizon: int):
        self.value = coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, current_kl / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon


class PerStepKL:
    """KL control that works at any batch size: after every step the coefficient is
    multiplied by exp(rate * e), e = clip(KL / target - 1, -1, 1), and kept within
    [min_coef, max_coef]. At a KL twice the target it grows by exp(rate) per step, at no
    KL it shrinks by the same factor; the Ziegler controller's 20% per `horizon` samples
    barely moves in a 60-step run of 16 rollouts."""

    def __init__(self, coef: float, target: float, rate: float, min_coef: float = 0.0, max_coef: float = float("inf")):
        self.min_coef, self.max_coef = min_coef, max_coef
        self.value = min(max(coef, min_coef), max_coef)
        self.target = target
        self.rate = rate

    def update(self, current_kl: float, n_steps: int) -> None:
        error = max(-1.0, min(1.0, current_kl / self.target - 1))
        self.value = min(max(self.value * math.exp(self.rate * error), self.min_coef), self.max_coef)


def leave_one_out_baseline(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO (Kool et al. 2019; Ahmadian et al. 2024): `rewards` (batch,) holds groups of
    `group_size` consecutive samples of one prompt; each sample's baseline is the mean
    reward of the other samples of its group. Returns the baselines (batch,)."""
    if group_size < 2 or rewards.shape[0] % group_size:
        raise ValueError(f"{rewards.shape[0]} rewards do not split into groups of {group_size} >= 2")
    groups = rewards.view(-1, group_size)
    others = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    return others.reshape(-1)


def rloo_advantages(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float,
                    group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence reward R_i = score_i - kl_coef * sum_t kl_it; advantage R_i minus its
    leave-one-out baseline, on every real token of sample i. Returns (advantages (batch,
    length), sequence rewards (batch,))."""
    sequence_rewards = scores - kl_coef * (kl * mask).sum(1)
    advantage = sequence_rewards - leave_one_out_baseline(sequence_rewards, group_size)
    return advantage.unsqueeze(1) * mask, sequence_rewards


class RunningMoments:
    """Mean and standard deviation of every value seen so far (Chan et al.'s parallel
    update), for whitening scores across steps rather than within one small batch."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, values: torch.Tensor) -> None:
        values = values.double().flatten()
        n = values.numel()
        if n == 0:
            return
        batch_mean = values.mean().item()
        batch_m2 = ((values - batch_mean) ** 2).sum().item()
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta ** 2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 1.0

    def whiten(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / max(self.std, 1e-6)


_WORD = re.compile(r"\w+(?:'\w+)?")


def repeated_bigram_share(texts: list[str]) -> float:
    """Share of the word bigrams of the texts that repeat an earlier bigram of the same
    text (lower-cased words): "great great great" -> 1 of its 2 bigrams; fluent text
    is near 0. Pooled over the texts; 0.0 when no text has two words."""
    total = repeated = 0
    for text in texts:
        words = _WORD.findall(text.lower())
        bigrams = list(zip(words, words[1:]))
        total += len(bigrams)
        repeated += len(bigrams) - len(set(bigrams))
    return repeated / total if total else 0.0
