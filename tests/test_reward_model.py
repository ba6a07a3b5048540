"""Training a reward model (tiny, 2 steps), serving it, blending it, hot-swapping it."""

import asyncio
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from reward_service import config as config_module
from reward_service import model_store
from reward_service.app import create_app
from reward_service.items import Item
from reward_service.backends.learned_rm import LearnedRMBackend
from reward_service.cli import main as cli
from reward_service.training.preferences import PreferencePair
from reward_service.training.reward_model import train_reward_model

PAIRS = [PreferencePair(f"Prompt {i}:", f" a lovely, kind answer number {i}", f" rude reply {i}") for i in range(12)]
PROMPTS = ["Tell me about the film.", "Q:", ""]
RESPONSES = [" It was wonderful.", " no", " A long answer " * 10]


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("tiny-rm") / "tiny-rm"
    card = train_reward_model(PAIRS, out, base_model=tiny_model, max_steps=2, batch_size=4, max_length=48,
                              progress=False)
    return out, card


def test_two_step_training_writes_model_card_and_curve(tiny_rm):
    out, card = tiny_rm
    assert (out / "model.safetensors").is_file() and (out / "training_curve.png").stat().st_size > 1000
    assert card["training"]["steps"] == 2 and card["training"]["trainer"] == "trl.RewardTrainer"
    assert card["data"]["train_pairs"] + card["data"]["held_out_pairs"] == len(PAIRS)
    assert 0 <= card["held_out_pairwise_accuracy"] <= 1
    assert card["normalization"]["std"] > 0 and card["tokenization"] == {"max_length": 48, "formatting": "pair", "truncation": "left"}
    assert json.loads((out / "model_card.json").read_text())["name"] == "tiny-rm"
    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_labels == 1


def pytorch_rewards(folder, prompts, responses, max_length):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return [model(**tokenizer(p, r, truncation="longest_first", max_length=max_length,
                                  return_tensors="pt")).logits[0, 0].item() for p, r in zip(prompts, responses)]


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_served_scores_equal_the_pytorch_forward(tiny_rm, runtime):
    out, card = tiny_rm
    settings = config_module.LearnedRMBackendSettings(type="learned-rm", model=str(out), runtime=runtime,
                                                      precision="fp32")

    async def serve():
        backend = LearnedRMBackend("rm", settings)
        await backend.load()
        try:
            return (await backend.score([Item(p, r) for p, r in zip(PROMPTS, RESPONSES)])).scores
        finally:
            await backend.close()

    served = asyncio.run(serve())
    np.testing.assert_allclose(served, pytorch_rewards(out, PROMPTS, RESPONSES, 48), atol=1e-4)


def test_normalization_uses_the_card_statistics(tiny_rm):
    out, card = tiny_rm
    mean, std = card["normalization"]["mean"], card["normalization"]["std"]

    async def serve(normalize):
        backend = LearnedRMBackend("rm", config_module.LearnedRMBackendSettings(
            type="learned-rm", model=str(out), runtime="torch", normalize=normalize))
        await backend.load()
        try:
            return (await backend.score([Item(p, r) for p, r in zip(PROMPTS, RESPONSES)])).scores
        finally:
            await backend.close()

    raw, normalized = asyncio.run(serve(False)), asyncio.run(serve(True))
    np.testing.assert_allclose(normalized, (np.array(raw) - mean) / std, rtol=1e-5)


def test_train_rm_cli_reads_a_jsonl_and_writes_a_servable_folder(tmp_path, tiny_model, capsys):
    data = tmp_path / "prefs.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected})
                              for p in PAIRS) + "\n" + json.dumps({"ranking": ["best", "ok", "worst"]}) + "\n")
    out = tmp_path / "my-rm"
    cli(["train-rm", str(data), "-o", str(out), "--base-model", str(tiny_model), "--max-steps", "2",
         "--batch-size", "4", "--max-length", "32"])
    printed = capsys.readouterr().out
    assert "15 preference pairs" in printed and "held-out pairwise accuracy" in printed
    card = model_store.read_card(out)
    assert card["data"]["files"][0]["sha256"] and card["data"]["files"][0]["pairs"] == 15
    assert not list(tmp_path.glob(".my-rm.*"))  # no staging folder left behind


def test_train_rm_cli_names_bad_lines(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{oops\n')
    with pytest.raises(SystemExit) as info:
        cli(["train-rm", str(data), "-o", str(tmp_path / "out")])
    assert info.value.code == 2
    assert "bad.jsonl:2: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ensemble_is_the_weighted_sum_of_its_members(tiny_rm, tiny_model):
    out, card = tiny_rm
    settings = config_module.parse(f"""
default_backend: blend
backends:
  rm: {{type: learned-rm, model: {out}, runtime: torch}}
  sentiment: {{type: sentiment, model: {tiny_model}, runtime: torch}}
  blend:
    type: ensemble
    members:
      - {{backend: rm, weight: 0.7, normalize: true}}
      - {{backend: sentiment, weight: 0.3, normalize: true, mean: 0.5, std: 0.5}}
""", "test", environ={})
    items = [{"prompt": p, "response": r} for p, r in zip(PROMPTS, RESPONSES)]
    with TestClient(create_app(settings, load_in_background=False)) as client:
        blend = client.post("/score", json={"items": items, "return_members": True}).json()
        rm = client.post("/score", json={"items": items, "backend": "rm"}).json()["scores"]
        sentiment = client.post("/score", json={"items": items, "backend": "sentiment"}).json()["scores"]
        listed = {b["name"]: b for b in client.get("/v1/backends").json()["backends"]}
    mean, std = card["normalization"]["mean"], card["normalization"]["std"]
    expected = 0.7 * (np.array(rm) - mean) / std + 0.3 * (np.array(sentiment) - 0.5) / 0.5
    np.testing.assert_allclose(blend["scores"], expected, rtol=1e-5, atol=1e-6)
    assert blend["members"] == {"rm": pytest.approx(rm), "sentiment": pytest.approx(sentiment)}
    assert blend["model"].startswith("ensemble(0.7*rm:tiny-rm@") and listed["blend"]["ready"]


def test_ensemble_config_errors_are_clear(tiny_model):
    with pytest.raises(config_module.ConfigError, match="member 'nope' is not a configured backend"):
        config_module.parse("""
default_backend: blend
backends:
  blend: {type: ensemble, members: [{backend: nope, weight: 1}]}
""", "test", environ={})


def test_reload_checks_the_new_model_against_the_new_settings(tmp_path):
    from reward_service.errors import ReloadFailed
    from reward_service.registry import BackendRegistry
    from tests.conftest import make_tiny_classifier

    folder = make_tiny_classifier(tmp_path / "rm-without-card", num_labels=1)  # no model card: no stored mean/std

    def settings(normalize):
        return config_module.parse(f"""
default_backend: rm
backends:
  rm: {{type: learned-rm, model: {folder}, runtime: torch, normalize: {str(normalize).lower()}}}
""", "test", environ={})

    async def run():
        registry = BackendRegistry(settings(False))
        await registry.load_all()
        before = await registry.get("rm").score([Item("p", "r")])
        with pytest.raises(ReloadFailed, match="stores a normalization mean and std"):
            await registry.reload("rm", settings(True))
        after = await registry.get("rm").score([Item("p", "r")])
        await registry.close_all()
        return before, after

    before, after = asyncio.run(run())
    assert before == after  # the old model and settings keep serving
