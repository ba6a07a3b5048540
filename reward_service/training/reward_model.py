"""Train a reward model (scalar head) on preference pairs with TRL's RewardTrainer.

We tokenise the pairs ourselves, as a BERT text pair (prompt, response) with
segment ids, using the same function the serving engine uses; TRL's own
tokenisation would join prompt + response into one string and append an EOS the
BERT tokenizer does not have, so training and serving would see different ids.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reward_service import model_store
from reward_service.engine.formatting import as_conversation, resolve_mode
from reward_service.engine.tokenization import encode_conversations, pad_batch
from reward_service.training import data
from reward_service.training.preferences import PreferencePair

log = logging.getLogger(__name__)


def _encode(tokenizer, mode: str, prompts: list[str], responses: list[str], max_length: int):
    conversations = [as_conversation(p, r) for p, r in zip(prompts, responses)]
    return encode_conversations(tokenizer, conversations, mode, max_length)


def _columns(side: str, rows: list[dict]) -> dict:
    """Dataset columns TRL recognises as already tokenised (`chosen_ids`), plus any other input
    the tokenizer gives (e.g. `chosen_token_type_ids`)."""
    return {f"{side}_ids" if name == "input_ids" else f"{side}_{name}": [row[name] for row in rows]
            for name in rows[0]}


@dataclass
class PairCollator:
    """TRL's preference collator, carrying every input the tokenizer gives (e.g. BERT's
    token_type_ids): chosen rows first, then rejected."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict:
        extra = [key[len("chosen_"):] for key in examples[0] if key.startswith("chosen_") and key != "chosen_ids"]
        rows = [{"input_ids": e[f"{side}_ids"], **{name: e[f"{side}_{name}"] for name in extra}}
                for side in ("chosen", "rejected") for e in examples]
        return {k: torch.from_numpy(v) for k, v in pad_batch(rows, self.pad_token_id).items()}


def train_only_the_top(model, layers: int) -> None:
    """Freeze everything but the last `layers` blocks of the model's layer stack (its longest
    ModuleList), the layers after it (final norm) and the head; embeddings stay frozen."""
    stack = max((m for m in model.modules() if isinstance(m, torch.nn.ModuleList)), key=len)
    in_stack = {id(p) for p in stack.parameters()}
    top = {id(p) for block in stack[len(stack) - layers:] for p in block.parameters()}
    for name, parameter in model.named_parameters():
        parameter.requires_grad = id(parameter) in top or (id(parameter) not in in_stack and "embed" not in name)


def _prompt_of(pair: PreferencePair) -> str:
    """What the split goes by: the prompt (HH pairs without one: the chosen text)."""
    return pair.prompt or pair.chosen


def split_pairs(pairs: list[PreferencePair], held_out_fraction: float) -> tuple[list, list]:
    """Held out by prompt, so pairs expanded from one rank list never straddle the split. When
    the fraction holds out no prompt (a small file), the prompt with the fewest pairs is held
    out whole; pairs that all share one prompt cannot be split, which is a ValueError."""
    pairs_per_prompt = Counter(_prompt_of(pair) for pair in pairs)
    held = {prompt for prompt in pairs_per_prompt if data.is_held_out(prompt, held_out_fraction)}
    if not held and len(pairs_per_prompt) == 1:
        raise ValueError(f"all {len(pairs)} preference pairs share one prompt, so none can be held out without "
                         "also training on its rank list: rate responses to at least two prompts")
    if not held and pairs_per_prompt:
        held = {min(pairs_per_prompt, key=pairs_per_prompt.get)}
    train = [pair for pair in pairs if _prompt_of(pair) not in held]
    test = [pair for pair in pairs if _prompt_of(pair) in held]
    return train, test


MIN_HELD_OUT_PAIRS = 30


def held_out_warning(test: list[PreferencePair]) -> str | None:
    """Below MIN_HELD_OUT_PAIRS the held-out accuracy moves in steps of 1/n and says little."""
    if len(test) >= MIN_HELD_OUT_PAIRS:
        return None
    prompts = len({_prompt_of(pair) for pair in test})
    return (f"only {len(test)} held-out pair(s) from {prompts} prompt(s): the held-out accuracy means little "
            f"below {MIN_HELD_OUT_PAIRS} pairs; train on more data before trusting it")


@torch.no_grad()
def _rewards(model, tokenizer, mode: str, prompts: list[str], responses: list[str], max_length: int,
             batch_size: int = 64) -> np.ndarray:
    model.eval()
    encoded = _encode(tokenizer, mode, prompts, responses, max_length)
    out = []
    for start in range(0, len(encoded), batch_size):
        feeds = pad_batch(encoded[start: start + batch_size], tokenizer.pad_token_id or 0)
        out.append(model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits[:, 0].float().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _plot_curve(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_accuracy"]) for h in history if "eval_accuracy" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="training loss", color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    if evals:
        ax2.plot(*zip(*evals), "o-", label="held-out pairwise accuracy", color="tab:green")
    ax2.set_ylabel("held-out accuracy")
    ax2.set_ylim(0, 1)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower left")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train_reward_model(
    pairs: list[PreferencePair],
    output_dir: Path,
    *,
    name: str | None = None,
    base_model: str | Path | None = None,
    data_files: list[dict] | None = None,
    held_out_fraction: float = 0.1,
    epochs: float = 1.0,
    max_steps: int = -1,
    batch_size: int = 16,
    learning_rate: float = 5e-5,
    max_length: int = 128,
    seed: int = 0,
    trainable_layers: int | None = None,
    eval_points: int = 5,
    progress: bool = True,
    extra_card: dict | None = None,
) -> dict:
    """Train, measure held-out pairwise accuracy, save weights + tokenizer + card + curve PNG.
    The base is any encoder, classifier or causal-LM folder (its head is replaced by a fresh
    scalar one); `trainable_layers`: train only the top N transformer layers (and the head)."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    started = time.time()
    output_dir = Path(output_dir)
    base_model = Path(base_model) if base_model else data.minilm_path()
    name = name or output_dir.name
    train, test = split_pairs(pairs, held_out_fraction)
    if not train or not test:
        raise ValueError(f"need at least 2 preference pairs to train and hold out; got {len(pairs)}")
    warning = held_out_warning(test)  # in the card; the CLI prints it beside the accuracy
    random.Random(seed).shuffle(train)

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    # Any encoder or classifier folder can be the base: its head is replaced by a fresh scalar one.
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model, num_labels=1, id2label={0: "reward"}, label2id={"reward": 0},
        use_safetensors=True, ignore_mismatched_sizes=True,
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.config.pad_token_id = tokenizer.pad_token_id
    mode = resolve_mode(tokenizer)  # as `learned-rm` serves it (formatting: auto): a chat template, or a text pair
    if trainable_layers is not None:
        train_only_the_top(model, trainable_layers)

    def tokenised(split: list[PreferencePair]) -> Dataset:
        prompts = [p.prompt for p in split]
        return Dataset.from_dict({
            **_columns("chosen", _encode(tokenizer, mode, prompts, [p.chosen for p in split], max_length)),
            **_columns("rejected", _encode(tokenizer, mode, prompts, [p.rejected for p in split], max_length)),
        })

    steps = max_steps if max_steps > 0 else max(1, int(np.ceil(len(train) / batch_size) * epochs))
    with tempfile.TemporaryDirectory(prefix="train-rm-") as scratch:
        args = RewardConfig(
            output_dir=scratch,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=64,
            num_train_epochs=epochs,
            max_steps=max_steps,
            learning_rate=learning_rate,
            warmup_steps=max(0, steps // 10),
            weight_decay=0.01,
            logging_steps=max(1, steps // 50),
            eval_strategy="steps",
            eval_steps=max(1, steps // max(1, eval_points)),
            save_strategy="no",
            report_to=[],
            bf16=False,  # TRL defaults bf16 on, even on CPU
            fp16=False,
            use_cpu=not torch.cuda.is_available(),
            remove_unused_columns=False,  # PairCollator reads the encoded columns
            max_length=None,  # we truncated already, exactly as serving does
            disable_tqdm=not progress,
            seed=seed,
            dataloader_num_workers=0,
        )
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=tokenised(train),
            eval_dataset=tokenised(test),
            processing_class=tokenizer,
            data_collator=PairCollator(tokenizer.pad_token_id),
        )
        trainer.train()
        history = trainer.state.log_history

    model = trainer.model.to("cpu")
    prompts = [p.prompt for p in test]
    chosen = _rewards(model, tokenizer, mode, prompts, [p.chosen for p in test], max_length)
    rejected = _rewards(model, tokenizer, mode, prompts, [p.rejected for p in test], max_length)
    accuracy = float((chosen > rejected).mean())
    responses = np.concatenate([chosen, rejected])

    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    _plot_curve(history, output_dir / "training_curve.png", f"{name}: held-out pairwise accuracy {accuracy:.3f}")
    (output_dir / "training_log.json").write_text(json.dumps(history, indent=1) + "\n")
    card = {
        "name": name,
        "task": "reward-model",
        "base_model": str(base_model),
        "data": {"files": data_files or [], "pairs": len(pairs), "train_pairs": len(train), "held_out_pairs": len(test)},
        "split": {"method": "sha256(prompt) bucket < fraction is held out", "held_out_fraction": held_out_fraction},
        "training": {
            "trainer": "trl.RewardTrainer", "steps": trainer.state.global_step, "epochs": epochs,
            "batch_size_pairs": batch_size, "learning_rate": learning_rate, "seed": seed,
            "trainable_layers": trainable_layers or "all",
            "torch_threads": torch.get_num_threads(),
        },
        "held_out_pairwise_accuracy": round(accuracy, 4),
        "held_out_warning": warning,
        "normalization": {
            "mean": float(responses.mean()),
            "std": float(responses.std() or 1.0),
            "computed_on": "held-out chosen and rejected responses",
        },
        "tokenization": {"max_length": max_length, "formatting": mode, "truncation": "left"},
        "training_seconds": round(time.time() - started, 1),
        **(extra_card or {}),
    }
    model_store.write_card(output_dir, card)
    return card


def file_entry(path: Path) -> dict:
    return {"path": os.path.abspath(path), "sha256": data.file_sha256(Path(path))}
