"""TRL's GRPOTrainer scoring with reward-service: 2 steps on a tiny model against a live service."""

import asyncio

import pytest

from tests.conftest import make_tiny_policy
from trainer_client.trl_adapter import as_text, async_reward_function, reward_function


def test_chat_messages_are_flattened():
    assert as_text([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "great"}]) == "hi\ngreat"
    assert as_text("plain") == "plain"


def test_sync_and_async_reward_functions_score_over_http(lexicon_service):
    sync = reward_function(lexicon_service, backend="lexicon")
    scores = sync(prompts=["p", "p"], completions=["I love it", "I hate it"], extra_column=[1, 2])
    assert scores[0] > 0.7 > 0.3 > scores[1]
    conversational = sync(prompts=[[{"role": "user", "content": "p"}]],
                          completions=[[{"role": "assistant", "content": "wonderful"}]])
    assert conversational[0] > 0.7
    async_fn = async_reward_function(lexicon_service, backend="lexicon")
    assert asyncio.run(async_fn(prompts=["p"], completions=["awful"]))[0] < 0.3
    assert sync.__name__ == "reward_service_lexicon"


def test_grpo_runs_two_steps_against_the_live_service(tmp_path, lexicon_service):
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    policy = make_tiny_policy(tmp_path / "policy")
    reward = reward_function(lexicon_service, backend="lexicon")
    calls = []
    original = reward.client.score
    reward.client.score = lambda *a, **k: calls.append(len(a[0])) or original(*a, **k)
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"), max_steps=2, per_device_train_batch_size=4, num_generations=2,
        max_completion_length=6, learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[],
        bf16=False, use_cpu=True, disable_tqdm=True, seed=0,
    )
    dataset = Dataset.from_dict({"prompt": ["the movie was", "this film is", "the story", "it was a"] * 4})
    trainer = GRPOTrainer(model=str(policy), reward_funcs=[reward], args=args, train_dataset=dataset)
    trainer.train()
    assert trainer.state.global_step == 2
    assert calls and all(n == 4 for n in calls)  # one /score call per generation batch
    logged = [h for h in trainer.state.log_history if "rewards/reward_service_lexicon/mean" in h]
    assert logged and all(0.0 <= h["rewards/reward_service_lexicon/mean"] <= 1.0 for h in logged)
