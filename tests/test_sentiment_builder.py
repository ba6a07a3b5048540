"""The sentiment builders (MiniLM and SmolLM2 recipes), end to end on tiny models: what goes in, what the card says."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from reward_service import model_store
from reward_service.training import sentiment


def test_the_builder_trains_on_reviews_and_composed_examples_and_records_the_hard_set(tmp_path, tiny_model):
    out = tmp_path / "rt"
    card = sentiment.build_sentiment_model(out, limit=64, base_model=tiny_model, composed=40, epochs=2.0,
                                           progress=False)
    assert model_store.read_card(out) == json.loads(json.dumps(card))
    assert card["data"]["train_examples"] == 64 and card["data"]["held_out_examples"] == 1237
    assert card["data"]["composed_examples"] == 40 == sum(card["data"]["composed_structures"].values())
    assert card["training"]["steps"] == 2 * 4  # (64 reviews + 40 composed) / batches of 32, twice
    hard = card["hard_reviews"]
    assert hard["measured"] and hard["reviews"] == 84 and 0.0 <= hard["accuracy"] <= 1.0
    assert set(hard["per_kind"]) == {"negation", "contrast", "sarcasm", "understatement", "mixed_opening",
                                     "mixed_verdict"}
    assert hard["lexicon_accuracy"] == 0.4524  # VADER, the same set as bench/hard_reviews.py
    blind = card["blind_hard_reviews"]  # the second held-out set, by another author: aggregates only
    assert blind["measured"] and blind["reviews"] == 144 and blind["set"] == "tests/data/hard_reviews_blind.jsonl"
    assert blind["lexicon_accuracy"] == 0.4931 and set(blind["per_kind"]) == set(hard["per_kind"])
    # trained: the classifier moved away from the base's
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    saved = load_file(out / "model.safetensors")
    assert not torch.equal(saved["classifier.weight"], base.classifier.weight.detach())


def test_without_extra_examples_it_is_the_reviews_alone(tmp_path, tiny_model):
    card = sentiment.build_sentiment_model(tmp_path / "plain", limit=32, base_model=tiny_model, composed=0,
                                           progress=False)
    assert card["data"]["composed_examples"] == 0 and card["data"]["composed_structures"] == {}
    assert card["training"]["steps"] == 1


def test_the_decoder_recipe_trains_only_the_top_in_bf16_and_serves_as_transformers_reads_it(tmp_path, smollm2_dir,
                                                                                          monkeypatch):
    """`sentiment-smollm2-rt`'s builder on a tiny 2-layer Llama with SmolLM2's tokenizer (its config
    naming no pad id, as many decoder bases' do not): the bottom block and the embeddings stay as they were,
    the top block, final norm and head move, under bf16 autocast; the saved config names the pad id
    the classifier reads past; the card says all this; and the `sentiment` backend (ONNX) gives
    transformers' own P(positive) for the plain text."""
    import asyncio

    from reward_service.backends.sentiment import SentimentBackend
    from reward_service.config import SentimentBackendSettings
    from reward_service.items import Item
    from tests.tiny_models import make_tiny_llama_lm

    base = make_tiny_llama_lm(tmp_path / "base", smollm2_dir, pad_token_id=None)
    autocasts = []
    real_autocast = torch.autocast

    def spy(*args, **kwargs):
        autocasts.append(kwargs)
        return real_autocast(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    out = tmp_path / "smol"
    card = sentiment.build_sentiment_smollm2_model(out, limit=48, base_model=base, composed=16, trainable_layers=1,
                                                   progress=False)
    monkeypatch.undo()
    assert autocasts and all(k["enabled"] and k["dtype"] == torch.bfloat16 for k in autocasts), autocasts
    assert AutoTokenizer.from_pretrained(out).pad_token_id == 2  # SmolLM2's <|im_end|>
    assert json.loads((out / "config.json").read_text())["pad_token_id"] == 2
    assert card["name"] == "sentiment-smollm2-rt" and card["base_model"] == sentiment.SMOLLM2_BASE
    assert card["training"]["trainable_layers"] == 1 and card["training"]["precision"].startswith("bf16")
    assert card["data"]["extended_composition"] is True and card["data"]["composed_examples"] == 16
    before, after = load_file(base / "model.safetensors"), load_file(out / "model.safetensors")
    for frozen in ("model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight"):
        assert torch.equal(before[frozen], after[frozen]), frozen
    for trained in ("model.layers.1.mlp.up_proj.weight", "model.norm.weight"):
        assert not torch.equal(before[trained], after[trained]), trained
    assert "score.weight" in after

    texts = ["Not the disaster I feared.", "A stellar cast stranded in a script with nothing to say, sadly."]
    reference = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = torch.softmax(reference(**batch).logits, -1)[:, 1].tolist()

    async def served():
        backend = SentimentBackend("sentiment", SentimentBackendSettings(type="sentiment", model=str(out),
                                                                         runtime="onnx", precision="fp32"))
        await backend.load()
        try:
            return (await backend.score([Item("", t) for t in texts])).scores
        finally:
            await backend.close()

    assert asyncio.run(served()) == pytest.approx(expected, abs=1e-4)


def test_the_store_builds_minilm_as_sentiment_and_the_smollm2_recipe_by_its_own_key():
    default = model_store.builtin_by_key("sentiment")
    assert default.name == "sentiment-minilm-rt" and default.build_function() is sentiment.build_sentiment_model
    smollm2 = model_store.builtin_by_key("sentiment-smollm2")
    assert smollm2.name == "sentiment-smollm2-rt"
    assert smollm2.build_function() is sentiment.build_sentiment_smollm2_model
    assert model_store.builtin_by_key("sentiment-smollm2-rt") is smollm2  # its name works as a key too
