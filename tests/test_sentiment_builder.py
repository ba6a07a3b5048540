"""The builder of `sentiment-minilm-rt`, end to end on a tiny model: what goes in, what the card says."""

import json

import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from reward_service import model_store
from reward_service.training import data, sentiment


def test_the_builder_trains_on_reviews_composed_and_written_examples_and_records_the_hard_set(tmp_path, tiny_model):
    out = tmp_path / "rt"
    card = sentiment.build_sentiment_model(out, limit=64, base_model=tiny_model, composed=40, written_repeats=2,
                                           progress=False)
    assert model_store.read_card(out) == json.loads(json.dumps(card))
    written = len(data.load_written_reviews())
    assert card["data"]["train_examples"] == 64 and card["data"]["held_out_examples"] == 1237
    assert card["data"]["composed_examples"] == 40 == sum(card["data"]["composed_structures"].values())
    assert card["data"]["written_reviews"] == written and card["data"]["written_repeats"] == 2
    # the steps cover reviews + composed + twice the written ones, for 1.25 epochs of 32
    assert card["training"]["steps"] == int((64 + 40 + 2 * written + 31) // 32 * 1.25)
    hard = card["hard_reviews"]
    assert hard["measured"] and hard["reviews"] == 84 and 0.0 <= hard["accuracy"] <= 1.0
    assert set(hard["per_kind"]) == {"negation", "contrast", "sarcasm", "understatement", "mixed_opening",
                                     "mixed_verdict"}
    assert hard["lexicon_accuracy"] == 0.4524  # VADER, the same set as bench/hard_reviews.py
    # word embeddings frozen: the saved ones are the base model's
    assert card["training"]["word_embeddings_frozen"] is True
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    saved = load_file(out / "model.safetensors")
    key = next(k for k in saved if k.endswith("word_embeddings.weight"))
    assert torch.equal(saved[key], base.get_input_embeddings().weight.detach())
    assert not torch.equal(saved[next(k for k in saved if k.startswith("classifier.weight"))],
                           base.classifier.weight.detach())


def test_without_extra_examples_it_is_the_reviews_alone(tmp_path, tiny_model):
    card = sentiment.build_sentiment_model(tmp_path / "plain", limit=32, base_model=tiny_model, composed=0,
                                           written_repeats=0, freeze_word_embeddings=False, epochs=1.0,
                                           progress=False)
    assert card["data"]["composed_examples"] == 0 and card["data"]["written_reviews"] == 0
    assert card["training"]["steps"] == 1 and card["training"]["word_embeddings_frozen"] is False
