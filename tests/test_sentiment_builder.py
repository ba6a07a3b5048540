"""The builder of `sentiment-minilm-rt`, end to end on a tiny model: what goes in, what the card says."""

import json

import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

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
    # trained: the classifier moved away from the base's
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    saved = load_file(out / "model.safetensors")
    assert not torch.equal(saved["classifier.weight"], base.classifier.weight.detach())


def test_without_extra_examples_it_is_the_reviews_alone(tmp_path, tiny_model):
    card = sentiment.build_sentiment_model(tmp_path / "plain", limit=32, base_model=tiny_model, composed=0,
                                           progress=False)
    assert card["data"]["composed_examples"] == 0 and card["data"]["composed_structures"] == {}
    assert card["training"]["steps"] == 1
