"""PPO on a tiny random policy against a real service process, over real HTTP: reward rises."""

import numpy as np

from tests.conftest import make_tiny_policy
from trainer_client.client import RewardClient
from trainer_client.ppo.config import PPOSettings
from trainer_client.ppo.trainer import PPOTrainer, summarize

PROMPTS = ["the movie was", "this film is", "the story of the cast", "it was a", "the ending was", "the music"]


def test_ppo_raises_the_reward_of_a_tiny_policy(tmp_path, lexicon_service):
    policy = make_tiny_policy(tmp_path / "policy")
    settings = PPOSettings(
        service_url=lexicon_service, policy=str(policy), steps=40, batch_size=16, minibatch_size=8, ppo_epochs=4,
        learning_rate=3e-3, trainable_layers=0, vf_coef=0.5, output_dir=str(tmp_path / "run"), sample_every=100,
        kl={"coef": 0.01, "adaptive": False},
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
