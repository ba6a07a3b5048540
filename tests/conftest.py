"""Shared fixtures: tiny random models built from configs, settings, apps."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reward_service import config as config_module


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory):
    """Keep model and ONNX caches of the tests out of the user's cache."""
    home = tmp_path_factory.mktemp("reward-home")
    previous = os.environ.get("REWARD_SERVICE_HOME")
    os.environ["REWARD_SERVICE_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("REWARD_SERVICE_HOME", None)
    else:
        os.environ["REWARD_SERVICE_HOME"] = previous


def make_tiny_classifier(target: Path, num_labels: int = 2, seed: int = 0, tokenizer_dir: Path | None = None) -> Path:
    """A 2-layer BERT with random weights and a real tokenizer (MiniLM's unless `tokenizer_dir`)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from reward_service.training.data import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or minilm_path())
    torch.manual_seed(seed)
    labels = {0: "negative", 1: "positive"} if num_labels == 2 else {i: f"LABEL_{i}" for i in range(num_labels)}
    cfg = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, num_labels=num_labels, id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2's real tokenizer and chat template as a plain folder (read from its GGUF once)."""
    from tests.tiny_models import smollm2_tokenizer_dir

    return smollm2_tokenizer_dir(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_classifier(tmp_path_factory.mktemp("tiny-sentiment"))


def settings_for(model_dir: Path, runtime: str = "torch", **server) -> config_module.Settings:
    text = f"""
default_backend: sentiment
backends:
  sentiment:
    type: sentiment
    model: {model_dir}
    runtime: {runtime}
    max_length: 64
  lexicon:
    type: lexicon
"""
    settings = config_module.parse(text, "test config", environ={})
    for key, value in server.items():
        setattr(settings.server, key, value)
    return settings


POSITIVE_WORDS = ["good", "great", "love", "wonderful", "happy", "excellent", "amazing", "fun", "best", "beautiful"]
NEGATIVE_WORDS = ["bad", "awful", "terrible", "boring", "hate", "worst", "ugly", "sad", "dull", "poor"]
NEUTRAL_WORDS = ["the", "movie", "was", "film", "it", "a", "and", "this", "story", "plot", "actor", "scene", "is",
                 "of", "to", "in", "that", "with", "for", "on", "cast", "time", "ending", "music", "script",
                 "director", "hour", "one", "two", "three"]


def make_tiny_policy(target: Path, seed: int = 0) -> Path:
    """A 2-layer Llama over a 53-word vocabulary: random sentences in, a reward the
    lexicon backend can give (sentiment words) out. Small enough to learn in seconds."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = POSITIVE_WORDS + NEGATIVE_WORDS + NEUTRAL_WORDS
    vocab = {"[PAD]": 0, "[EOS]": 1, "[UNK]": 2, **{w: i + 3 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", eos_token="[EOS]",
                                        unk_token="[UNK]")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, eos_token_id=1, bos_token_id=None, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


PG_URL = os.environ.get("REWARD_SERVICE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_schema_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh, empty human-queue store: a SQLite file, or a PostgreSQL schema on the local
    server (skipped when none runs, except in CI, where it must)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.sqlite3'}"
        return
    import uuid

    import psycopg

    schema = f"hq_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _postgres_schema_url(schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:  # a fresh one: a test may cut connections
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def human_config(store_url: str, **fields) -> config_module.Settings:
    """A config with a human backend on `store_url` (raters alice, bob, carol) and a lexicon fallback."""
    import yaml

    raters = {"alice": "token-alice-0123456", "bob": "token-bob-0123456", "carol": "token-carol-0123456"}
    human = {"type": "human", "store": store_url, "raters": raters, "poll_interval_s": 0.05, **fields}
    data = {"default_backend": "human", "backends": {"lexicon": {"type": "lexicon"}, "human": human}}
    return config_module.parse(yaml.safe_dump(data), "test config", environ={})


def write_human_config(folder: Path, raters: dict[str, str], **fields) -> Path:
    """A config file with one human backend (the default) on a SQLite file in `folder`."""
    import yaml

    human = {"type": "human", "store": f"sqlite:///{folder / 'queue.sqlite3'}", "raters": raters,
             "poll_interval_s": 0.1, **fields}
    path = folder / "human.yaml"
    path.write_text(yaml.safe_dump({"default_backend": "human", "backends": {"human": human}}))
    return path


def start_server(config_path, env_extra=None, port=None):
    """The real service in a child process (its output kept for a failure message)."""
    from bench.load import start_service

    return start_service(config_path, env_extra, ready_timeout_s=120, port=port, keep_output=True)


def stop(process):
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def lexicon_service(tmp_path_factory):
    """A live service process with one lexicon backend, over real HTTP."""
    config = tmp_path_factory.mktemp("lexicon-service") / "reward.yaml"
    config.write_text("default_backend: lexicon\nbackends:\n  lexicon: {type: lexicon}\n")
    process, url = start_server(config)
    yield url
    stop(process)
