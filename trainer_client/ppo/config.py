"""`ppo-train` settings: a YAML file, every key optional.

The defaults are the main job's since issue 16 (README, "PPO: the main job"); `classic.yaml`
beside this module holds the ones before it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerationSettings(Strict):
    max_new_tokens: int = Field(20, ge=1)
    min_new_tokens: int = Field(4, ge=0)
    temperature: float = Field(1.0, gt=0)
    top_k: int = 0
    top_p: float = Field(1.0, gt=0, le=1)


class KLSettings(Strict):
    coef: float = Field(0.1, ge=0, description="KL penalty coefficient (the initial one when adaptive)")
    adaptive: bool = Field(False, description="move the coefficient so the KL tracks `target` (false: fixed `coef`)")
    controller: Literal["per-step", "ziegler"] = Field(
        "ziegler", description="per-step: the coefficient moves by up to a factor exp(rate) every step, whatever "
        "the batch size; ziegler: Ziegler et al. 2019, at most 20% per `horizon` samples (slow at small batches)")
    penalty: Literal["reward", "loss"] = Field(
        "loss", description="reward: -coef * (log pi - log pi_ref) of each sampled token in the reward (Ziegler "
        "et al.; the advantages carry it); loss: the scores alone make the advantages and coef * the exact "
        "per-token KL to the reference (whole vocabulary, mean over response tokens) is added to the loss. "
        "The same coef weighs a per-token mean there and a per-sequence sum in reward, and the advantages "
        "are whitened: the values do not carry over between the two; `target` is nats per sequence in both")
    target: float = Field(6.0, gt=0, description="adaptive: the KL (nats per sequence) to track")
    horizon: int = Field(10000, gt=0, description="ziegler: samples over which the coefficient may move 20%")
    rate: float = Field(0.5, gt=0, description="per-step: the largest log-change of the coefficient in one step")
    min_coef: float = Field(0.05, ge=0, description="per-step: the coefficient never goes below this")
    max_coef: float = Field(2.0, gt=0, description="per-step: nor above this")


class PPOSettings(Strict):
    service_url: str = "http://127.0.0.1:8000"
    backend: str | None = Field(None, description="reward backend; default: the service's default")
    reward_timeout_s: float = Field(120.0, gt=0, description="per reward call; human backends need more")
    on_model_change: Literal["warn", "error", "ignore"] = "warn"
    policy: str = Field("smollm2-135m-instruct", description="smollm2-135m-instruct, or any HF causal LM folder")
    prompts: str = Field("rotten-tomatoes", description="rotten-tomatoes, or a text file with one prompt per line")
    prompt_words: int = Field(4, ge=1, description="rotten-tomatoes: opening words of a review")
    steps: int = Field(60, ge=1)
    batch_size: int = Field(64, ge=2, description="rollouts per step = items per reward call")
    minibatch_size: int = Field(16, ge=1)
    ppo_epochs: int = Field(1, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    trainable_layers: int = Field(8, ge=0, description="train only the top N transformer blocks (0 = all)")
    train_embeddings: bool = Field(False, description="with trainable_layers > 0, train the LM head too; tied to the "
                                   "input embeddings (SmolLM2) it moves every token's input, and the backward pass "
                                   "runs through every block. false: it stays frozen, the step is faster")
    max_grad_norm: float = Field(1.0, gt=0)
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    cliprange: float = Field(0.2, gt=0)
    cliprange_value: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, ge=0, description="gae: weight of the value loss")
    advantage: Literal["rloo", "gae"] = Field(
        "rloo", description="rloo: each sample's sequence reward (score - kl.coef * its KL) minus the mean of the "
        "other samples of its prompt (leave-one-out, Ahmadian et al. 2024), on every token; no critic. "
        "gae: per-token KL penalty and a learned value head")
    group_size: int = Field(4, ge=1, description="samples per prompt in a step (batch_size / group_size prompts); "
                            "rloo needs at least 2")
    whiten_scores: bool = Field(False, description="normalise scores by the running mean and std of every score "
                                "seen so far, before the KL penalty (keeps kl.coef's meaning across reward scales)")
    whiten_rewards: bool = Field(False, description="gae: whiten the per-token rewards of each batch (scale only)")
    entropy_coef: float = Field(0.0, ge=0, description="entropy bonus: loss -= entropy_coef * mean token entropy")
    kl: KLSettings = KLSettings()
    generation: GenerationSettings = GenerationSettings()
    seed: int = 0
    output_dir: str = "runs/ppo"
    sample_every: int = Field(5, ge=1, description="print sample generations every N steps")
    save_policy: bool = True

    @model_validator(mode="after")
    def _groups_fit(self):
        if self.batch_size % self.group_size:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of group_size {self.group_size}")
        if self.advantage == "rloo" and self.group_size < 2:
            raise ValueError("advantage rloo needs group_size >= 2 (a leave-one-out baseline needs another sample)")
        if self.kl.min_coef > self.kl.max_coef:
            raise ValueError(f"kl.min_coef {self.kl.min_coef} is above kl.max_coef {self.kl.max_coef}")
        return self


class ConfigError(ValueError):
    """A PPO config that cannot be used; the message says where and why."""


def load(path: str | Path | None, overrides: dict | None = None) -> PPOSettings:
    data = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return PPOSettings.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"  - {'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid config {path or ''}:\n{problems}") from None
