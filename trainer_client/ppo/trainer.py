"""The PPO loop: generate, score over HTTP (one call per rollout batch), update.

Policy = a causal LM with a scalar value head on its last hidden state; a frozen
copy is the reference for the KL penalty. Each step: sample batch_size / group_size
prompts, generate group_size samples of each, compute old and reference log-probs
and values, get the rewards from reward-service, then the advantages, either
(advantage: rloo) each sample's KL-penalised sequence reward minus the mean of the
other samples of its prompt, or (advantage: gae) KL-penalised per-token rewards and
GAE with the value head; whiten them, then several PPO epochs over minibatches.
With kl.penalty loss the KL leaves the rewards: the scores alone make the advantages, and
the exact per-token KL to the reference (whole vocabulary) is a term of the loss.
"""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainer_client.client import RewardClient
from trainer_client.ppo import core
from trainer_client.ppo.config import PPOSettings


class PolicyWithValue(nn.Module):
    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        self.value_head = nn.Linear(lm.config.hidden_size, 1)
        nn.init.normal_(self.value_head.weight, std=1e-3)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask):
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                      output_hidden_states=True, use_cache=False)
        return out.logits, self.value_head(out.hidden_states[-1].float()).squeeze(-1)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as generate() uses them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def freeze_lower_layers(lm: nn.Module, trainable: int, train_embeddings: bool = True) -> None:
    """Train only the top `trainable` blocks, the final norm and (train_embeddings) the LM head
    (0 = everything). Where the LM head is tied to the input embeddings (SmolLM2), training it
    trains the input embeddings too, and the backward pass then runs through every block;
    with train_embeddings false it stays frozen and the backward pass stops at the lowest
    trainable block."""
    if trainable <= 0:
        return
    blocks = None
    for attribute in ("model.layers", "transformer.h", "gpt_neox.layers"):
        node = lm
        try:
            for part in attribute.split("."):
                node = getattr(node, part)
        except AttributeError:
            continue
        blocks = node
        break
    if blocks is None or trainable >= len(blocks):
        return
    for parameter in lm.parameters():
        parameter.requires_grad = False
    for block in list(blocks)[-trainable:]:
        for parameter in block.parameters():
            parameter.requires_grad = True
    heads = [lm.get_output_embeddings()] if train_embeddings else []
    for module in [getattr(getattr(lm, "model", lm), "norm", None), *heads]:
        if module is not None:
            for parameter in module.parameters():
                parameter.requires_grad = True


@dataclass
class Rollout:
    prompts: list[str]
    responses: list[str]
    input_ids: torch.Tensor  # (B, P + T): left-padded prompt, then the response
    attention_mask: torch.Tensor
    response_mask: torch.Tensor  # (B, T)
    prompt_length: int


class PPOTrainer:
    def __init__(self, settings: PPOSettings, policy_dir: Path, client: RewardClient, prompts: list[str]):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings
        self.client = client
        self.prompts = prompts
        self.rng = random.Random(settings.seed)
        torch.manual_seed(settings.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(policy_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        lm = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32)
        self.reference = copy.deepcopy(lm).eval().requires_grad_(False)
        freeze_lower_layers(lm, settings.trainable_layers, settings.train_embeddings)
        self.policy = PolicyWithValue(lm)
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, eps=1e-6)
        self.kl = kl_controller(settings)
        self.score_moments = core.RunningMoments()
        self.trainable_parameters = sum(p.numel() for p in trainable)

    # ------------------------------------------------------------------ rollout

    @torch.no_grad()
    def generate(self, prompts: list[str]) -> Rollout:
        g = self.settings.generation
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True)
        self.policy.lm.eval()
        output = self.policy.lm.generate(
            **encoded, do_sample=True, max_new_tokens=g.max_new_tokens, min_new_tokens=g.min_new_tokens,
            temperature=g.temperature, top_k=g.top_k, top_p=g.top_p, pad_token_id=self.tokenizer.pad_token_id,
        )
        prompt_length = encoded["input_ids"].shape[1]
        response = output[:, prompt_length:]
        eos = self.tokenizer.eos_token_id
        # Real response tokens: everything up to and including the first EOS.
        is_eos = (response == eos).int() if eos is not None else torch.zeros_like(response)
        after_eos = (torch.cumsum(is_eos, 1) - is_eos) > 0
        response_mask = (~after_eos).long()
        attention_mask = torch.cat([encoded["attention_mask"], response_mask], 1)
        texts = [self.tokenizer.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(response, response_mask)]
        return Rollout(prompts, texts, output, attention_mask, response_mask, prompt_length)

    def _forward(self, model, rollout_ids, attention_mask, prompt_length, with_values: bool):
        """Log-probs (and values) of the response tokens: position i predicts token i+1."""
        response_length = rollout_ids.shape[1] - prompt_length
        if with_values:
            logits, values = model(rollout_ids, attention_mask)
            values = values[:, prompt_length - 1: -1]
        else:
            logits = model(input_ids=rollout_ids, attention_mask=attention_mask,
                           position_ids=position_ids(attention_mask)).logits
            values = None
        # The distribution actually sampled from (top-k/top-p truncation aside): logits / temperature.
        logits = logits[:, prompt_length - 1: -1] / self.settings.generation.temperature
        targets = rollout_ids[:, prompt_length:]
        assert logits.shape[1] == response_length
        return logits, core.token_logprobs(logits, targets), values

    # ------------------------------------------------------------------ one step

    def step(self, step: int) -> tuple[dict, Rollout, list[float]]:
        s = self.settings
        started = time.perf_counter()
        # group_size consecutive samples of each prompt (group_size 1: the draws as before issue 16)
        batch_prompts = [prompt for prompt in (self.prompts[self.rng.randrange(len(self.prompts))]
                                               for _ in range(s.batch_size // s.group_size))
                         for _ in range(s.group_size)]
        rollout = self.generate(batch_prompts)
        generated = time.perf_counter()

        call_started = time.perf_counter()
        result = self.client.score(rollout.prompts, rollout.responses, request_id=f"{self.client.run_id}-step{step}",
                                   timeout_s=s.reward_timeout_s)
        reward_seconds = time.perf_counter() - call_started
        scores = torch.tensor(result.scores, dtype=torch.float32)
        train_scores = scores
        if s.whiten_scores:
            self.score_moments.update(scores)
            train_scores = self.score_moments.whiten(scores).float()

        mask = rollout.response_mask.float()
        with torch.no_grad():
            self.policy.eval()
            _, old_logprobs, old_values = self._forward(self.policy, rollout.input_ids, rollout.attention_mask,
                                                        rollout.prompt_length, True)
            ref_logits, ref_logprobs, _ = self._forward(self.reference, rollout.input_ids, rollout.attention_mask,
                                                        rollout.prompt_length, False)
            # kl.penalty loss: the KL leaves the reward and enters the loss (exact, against these)
            kl_in_loss = s.kl.penalty == "loss"
            ref_distribution = torch.log_softmax(ref_logits.float(), -1) if kl_in_loss else None
            del ref_logits
            reward_kl_coef = 0.0 if kl_in_loss else self.kl.value
            if s.advantage == "rloo":
                kl = (old_logprobs - ref_logprobs) * mask
                advantages, _ = core.rloo_advantages(train_scores, kl, mask, reward_kl_coef, s.group_size)
                returns = None
            else:
                rewards, kl = core.kl_penalized_rewards(train_scores, old_logprobs, ref_logprobs, mask, reward_kl_coef)
                if s.whiten_rewards:
                    rewards = core.whiten(rewards, mask, shift_mean=False)
                advantages, returns = core.gae(rewards, old_values, mask, s.gamma, s.lam)
            advantages = core.whiten(advantages, mask)

        self.policy.eval()  # no dropout: the PPO ratio must be 1 before the first update
        losses = {"policy_loss": [], "value_loss": [], "clipfrac": [], "approx_kl": [], "entropy": [], "kl_loss": []}
        for _ in range(s.ppo_epochs):
            order = list(range(s.batch_size))
            self.rng.shuffle(order)
            for start in range(0, s.batch_size, s.minibatch_size):
                index = torch.tensor(order[start: start + s.minibatch_size])
                logits, logprobs, values = self._forward(
                    self.policy, rollout.input_ids[index], rollout.attention_mask[index], rollout.prompt_length, True)
                m = mask[index]
                pg_loss, pg_stats = core.policy_loss(logprobs, old_logprobs[index], advantages[index], m, s.cliprange)
                loss = pg_loss
                if returns is not None:  # gae: train the critic; rloo needs none
                    vf_loss, _ = core.value_loss(values, old_values[index], returns[index], m, s.cliprange_value)
                    loss = loss + s.vf_coef * vf_loss
                else:
                    vf_loss = torch.zeros(())
                if kl_in_loss:
                    kl_loss = core.masked_mean(core.token_kl(logits, ref_distribution[index]), m)
                    loss = loss + self.kl.value * kl_loss
                    losses["kl_loss"].append(kl_loss.item())
                if s.entropy_coef > 0:
                    loss = loss - s.entropy_coef * core.masked_mean(core.entropy(logits), m)
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in self.policy.parameters() if p.requires_grad],
                                               s.max_grad_norm)
                self.optimizer.step()
                losses["policy_loss"].append(pg_loss.item())
                losses["value_loss"].append(vf_loss.item())
                losses["clipfrac"].append(pg_stats["clipfrac"])
                losses["approx_kl"].append(pg_stats["approx_kl"])
                losses["entropy"].append(core.masked_mean(core.entropy(logits.detach()), m).item())

        sequence_kl = kl.sum(1).mean().item()
        self.kl.update(sequence_kl, s.batch_size)
        total = time.perf_counter() - started
        stats = {
            "step": step,
            "reward_mean": float(scores.mean()),
            "reward_std": float(scores.std()) if len(scores) > 1 else 0.0,
            "kl": sequence_kl,
            "kl_coef": self.kl.value,
            "repeated_bigrams": core.repeated_bigram_share(rollout.responses),
            "entropy": float(np.mean(losses["entropy"])),
            "policy_loss": float(np.mean(losses["policy_loss"])),
            "value_loss": float(np.mean(losses["value_loss"])),
            "clipfrac": float(np.mean(losses["clipfrac"])),
            "approx_kl": float(np.mean(losses["approx_kl"])),
            "token_kl": float(np.mean(losses["kl_loss"])) if losses["kl_loss"] else None,
            "response_tokens": float(mask.sum(1).mean()),
            "reward_call_s": reward_seconds,
            "reward_call_share": reward_seconds / total,
            "generate_s": generated - started,
            "step_s": total,
            "reward_model": result.model,
        }
        return stats, rollout, result.scores

    # ------------------------------------------------------------------ the run

    def train(self, progress: bool = True) -> list[dict]:
        from tqdm.auto import tqdm

        s = self.settings
        out = Path(s.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        log_path = out / "log.jsonl"
        history = []
        with open(log_path, "w") as log_file, tqdm(range(1, s.steps + 1), desc="PPO", unit="step", disable=not progress) as bar:
            for step in bar:
                stats, rollout, scores = self.step(step)
                history.append(stats)
                log_file.write(json.dumps(stats) + "\n")
                log_file.flush()
                bar.set_postfix(reward=f"{stats['reward_mean']:.3f}", kl=f"{stats['kl']:.2f}")
                if step == 1 or step % s.sample_every == 0 or step == s.steps:
                    bar.write(f"\nstep {step}: mean reward {stats['reward_mean']:.3f}, KL {stats['kl']:.2f}")
                    for prompt, response, score in list(zip(rollout.prompts, rollout.responses, scores))[:3]:
                        bar.write(f"  [{score:.2f}] {prompt!r} -> {response!r}")
        plot_rewards(history, out / "reward_curve.png")
        if s.save_policy:
            self.policy.lm.save_pretrained(out / "policy", safe_serialization=True)
            self.tokenizer.save_pretrained(out / "policy")
            torch.save(self.policy.value_head.state_dict(), out / "policy" / "value_head.pt")
        summary = summarize(history)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return history


def kl_controller(settings: PPOSettings):
    kl = settings.kl
    if not kl.adaptive:
        return core.FixedKL(kl.coef)
    if kl.controller == "ziegler":
        return core.AdaptiveKL(kl.coef, kl.target, kl.horizon)
    return core.PerStepKL(kl.coef, kl.target, kl.rate, kl.min_coef, kl.max_coef)


def summarize(history: list[dict], window: int = 10) -> dict:
    window = max(1, min(window, len(history) // 2 or 1))
    first = float(np.mean([h["reward_mean"] for h in history[:window]]))
    last = float(np.mean([h["reward_mean"] for h in history[-window:]]))
    return {
        "steps": len(history),
        "window": window,
        f"reward_first_{window}": first,
        f"reward_last_{window}": last,
        "reward_gain": last - first,
        "kl_last": history[-1]["kl"],
        "kl_max": max(h["kl"] for h in history),
        "kl_coef_last": history[-1]["kl_coef"],
        f"repeated_bigrams_first_{window}": float(np.mean([h["repeated_bigrams"] for h in history[:window]])),
        f"repeated_bigrams_last_{window}": float(np.mean([h["repeated_bigrams"] for h in history[-window:]])),
        "mean_step_s": float(np.mean([h["step_s"] for h in history])),
        "mean_reward_call_share": float(np.mean([h["reward_call_share"] for h in history])),
        "reward_model": history[-1]["reward_model"],
    }


def plot_rewards(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    mean = np.array([h["reward_mean"] for h in history])
    std = np.array([h["reward_std"] for h in history])
    fig, (ax, ax_kl) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax.plot(steps, mean, label="mean reward")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.2, label="± std")
    if len(mean) >= 5:
        k = 5
        smooth = np.convolve(mean, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, label="5-step average")
    ax.set_ylabel("reward")
    ax.legend(loc="lower right")
    ax.set_title(f"PPO against reward-service ({history[-1]['reward_model']})")
    ax_kl.plot(steps, [h["kl"] for h in history], color="tab:red", label="KL")
    ax_kl.set_ylabel("KL to reference (nats)")
    ax_rep = ax_kl.twinx()
    ax_rep.plot(steps, [h["repeated_bigrams"] for h in history], color="tab:gray", linestyle=":",
                label="repeated bigrams")
    ax_rep.set_ylabel("repeated-bigram share")
    ax_rep.set_ylim(0, 1)
    lines = ax_kl.get_lines() + ax_rep.get_lines()
    ax_kl.legend(lines, [line.get_label() for line in lines], loc="upper left")
    ax_kl.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

