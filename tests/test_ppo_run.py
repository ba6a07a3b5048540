"""PPO on a tiny random policy against a real service process, over real HTTP: reward rises."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_tiny_policy
from trainer_client.client import RewardClient
from trainer_client.ppo import config, core
from trainer_client.ppo.config import PPOSettings
from trainer_client.ppo.trainer import PPOTrainer, kl_controller, summarize

PROMPTS = ["the movie was", "this film is", "the story of the cast", "it was a", "the ending was", "the music"]


def test_ppo_raises_the_reward_of_a_tiny_policy(tmp_path, lexicon_service):
    """The behaviour before issue 16 (critic + GAE, one sample per prompt), kept by config."""
    policy = make_tiny_policy(tmp_path / "policy")
    settings = PPOSettings(
        service_url=lexicon_service, policy=str(policy), steps=40, batch_size=16, minibatch_size=8, ppo_epochs=4,
        learning_rate=3e-3, trainable_layers=0, vf_coef=0.5, output_dir=str(tmp_path / "run"), sample_every=100,
        advantage="gae", group_size=1, kl={"coef": 0.01, "adaptive": False, "penalty": "reward"},
        generation={"max_new_tokens": 6, "min_new_tokens": 1, "temperature": 1.0},
    )
    with RewardClient(lexicon_service) as client:
        history = PPOTrainer(settings, policy, client, PROMPTS).train(progress=False)
    summary = summarize(history, window=8)
    assert summary["reward_gain"] > 0.1, [round(h["reward_mean"], 3) for h in history]
    assert np.isfinite([h["kl"] for h in history]).all()
    assert min(h["response_tokens"] for h in history) < 6  # some rollouts ended early: masks were exercised
    run = tmp_path / "run"
    assert (run / "reward_curve.png").stat().st_size > 1000
    assert len((run / "log.jsonl").read_text().splitlines()) == 40
    assert (run / "policy" / "model.safetensors").is_file()
    assert all(h["reward_model"].startswith("vader@") for h in history)


def test_rloo_with_group_baselines_raises_the_reward_and_logs_repetition(tmp_path, lexicon_service):
    policy = make_tiny_policy(tmp_path / "policy")
    settings = PPOSettings(
        service_url=lexicon_service, policy=str(policy), steps=30, batch_size=16, minibatch_size=8, ppo_epochs=4,
        learning_rate=3e-3, trainable_layers=0, output_dir=str(tmp_path / "run"), sample_every=100,
        save_policy=False, whiten_scores=True, entropy_coef=0.01,
        advantage="rloo", group_size=4,
        kl={"coef": 0.01, "target": 4.0, "controller": "per-step", "adaptive": True, "penalty": "reward",
            "min_coef": 0.0},  # no floor: the coefficient moves on every step
        generation={"max_new_tokens": 6, "min_new_tokens": 1, "temperature": 1.0},
    )
    with RewardClient(lexicon_service) as client:
        trainer = PPOTrainer(settings, policy, client, PROMPTS)
        assert isinstance(trainer.kl, core.PerStepKL)
        _, rollout, _ = trainer.step(0)
        groups = [rollout.prompts[i: i + 4] for i in range(0, 16, 4)]
        assert all(len(set(group)) == 1 for group in groups)  # 4 prompts, 4 samples each, consecutive
        history = trainer.train(progress=False)
    summary = summarize(history, window=8)
    assert summary["reward_gain"] > 0.1, [round(h["reward_mean"], 3) for h in history]
    assert np.isfinite([h["kl"] for h in history]).all()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(0.0 <= entry["repeated_bigrams"] <= 1.0 for entry in log)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["repeated_bigrams_first_10"] == pytest.approx(np.mean([e["repeated_bigrams"] for e in log[:10]]))
    assert saved["repeated_bigrams_last_10"] == pytest.approx(np.mean([e["repeated_bigrams"] for e in log[-10:]]))
    # the coefficient moved every step (Ziegler's would have moved by under 1% in all)
    assert len({round(e["kl_coef"], 9) for e in log}) > 10


def test_defaults_and_the_classic_settings_by_config(tmp_path):
    # defaults since issue 16: 16 prompts x 4 samples, leave-one-out baselines, one pass, a fixed
    # KL coefficient on the exact per-token KL in the loss, the tied embeddings frozen (README)
    defaults = PPOSettings()
    assert (defaults.advantage, defaults.batch_size, defaults.group_size, defaults.minibatch_size,
            defaults.ppo_epochs, defaults.train_embeddings) == ("rloo", 64, 4, 16, 1, False)
    assert (defaults.kl.penalty, defaults.kl.adaptive, defaults.kl.coef) == ("loss", False, 0.1)
    assert isinstance(kl_controller(defaults), core.FixedKL) and kl_controller(defaults).value == 0.1
    # the settings before issue 16, shipped beside the module and kept by config
    classic = config.load(Path(config.__file__).parent / "classic.yaml")
    assert (classic.advantage, classic.batch_size, classic.group_size, classic.minibatch_size, classic.ppo_epochs,
            classic.train_embeddings, classic.learning_rate, classic.trainable_layers) == ("gae", 16, 1, 8, 4, True,
                                                                                         1e-4, 8)
    assert (classic.kl.penalty, classic.kl.coef) == ("reward", 0.05)
    controller = kl_controller(classic)
    assert isinstance(controller, core.AdaptiveKL) and controller.horizon == 10000 and controller.target == 6
    grouped = tmp_path / "rloo.yaml"
    grouped.write_text("advantage: rloo\ngroup_size: 4\nkl: {adaptive: true, controller: per-step, target: 4}\n")
    settings = config.load(grouped)
    assert isinstance(kl_controller(settings), core.PerStepKL) and kl_controller(settings).target == 4
    with pytest.raises(config.ConfigError, match="not a multiple of group_size 4"):
        config.load(grouped, {"batch_size": 6})
    with pytest.raises(config.ConfigError, match="rloo needs group_size >= 2"):
        config.load(None, {"advantage": "rloo", "group_size": 1})


def test_kl_in_the_loss_keeps_the_scores_alone_in_the_advantages_and_holds_the_kl(tmp_path, lexicon_service):
    """kl.penalty loss: rewards rise, the exact per-token KL is logged, and a large coefficient
    keeps the policy closer to the reference than a small one does, on the same seed."""
    policy = make_tiny_policy(tmp_path / "policy")

    def run(coef: float, name: str) -> list[dict]:
        settings = PPOSettings(
            service_url=lexicon_service, policy=str(policy), steps=20, batch_size=16, minibatch_size=8,
            ppo_epochs=4, learning_rate=3e-3, trainable_layers=0, output_dir=str(tmp_path / name), sample_every=100,
            save_policy=False, advantage="rloo", group_size=4,
            kl={"coef": coef, "adaptive": False, "penalty": "loss"},
            generation={"max_new_tokens": 6, "min_new_tokens": 1, "temperature": 1.0},
        )
        with RewardClient(lexicon_service) as client:
            return PPOTrainer(settings, policy, client, PROMPTS).train(progress=False)

    free, held = run(0.0, "free"), run(5.0, "held")
    assert summarize(free, window=5)["reward_gain"] > 0.1, [round(h["reward_mean"], 3) for h in free]
    assert all(h["token_kl"] is not None and h["token_kl"] >= 0 for h in free + held)
    late = slice(-5, None)
    assert np.mean([h["kl"] for h in held[late]]) < np.mean([h["kl"] for h in free[late]])


def test_frozen_tied_embeddings_stop_the_backward_pass_at_the_lowest_trainable_block():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainer_client.ppo.trainer import freeze_lower_layers

    def tied_model():
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                            num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True))

    def grad_flows_into(lm, block: int) -> bool:
        seen = []
        handle = lm.model.layers[block].register_forward_hook(lambda module, args, out: seen.append(
            (out[0] if isinstance(out, tuple) else out).requires_grad))
        lm(input_ids=torch.tensor([[3, 4, 5]]))
        handle.remove()
        return seen[0]

    trained = tied_model()
    freeze_lower_layers(trained, 1)  # the behaviour before: the tied head (= the input embeddings) trains
    assert trained.model.embed_tokens.weight is trained.lm_head.weight and trained.lm_head.weight.requires_grad
    assert grad_flows_into(trained, 0)  # the backward pass runs through every block
    frozen = tied_model()
    freeze_lower_layers(frozen, 1, train_embeddings=False)
    assert not frozen.lm_head.weight.requires_grad and not frozen.model.embed_tokens.weight.requires_grad
    assert not grad_flows_into(frozen, 1) and grad_flows_into(frozen, 2)
    assert frozen.model.norm.weight.requires_grad
    assert {n for n, p in frozen.named_parameters() if p.requires_grad} == \
        {n for n, _ in frozen.model.layers[2].named_parameters(prefix="model.layers.2")} | {"model.norm.weight"}
    assert config.load(None, {"train_embeddings": True}).train_embeddings and not PPOSettings().train_embeddings
