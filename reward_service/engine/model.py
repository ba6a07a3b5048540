"""One served model: tokenizer + runtime + dynamic batcher.

Backends ask it for logits of (text, optional pair) items; it knows nothing of
HTTP or of what the logits mean.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np

from reward_service import model_store
from reward_service.config import ModelBackendSettings
from reward_service.engine.batcher import DynamicBatcher
from reward_service.engine.tokenization import encode_texts, pad_batch

log = logging.getLogger(__name__)

INLINE_TOKENIZE_CHARS = 4096  # requests with more text tokenise in a thread, off the event loop
DEFAULT_MAX_LENGTH = 256  # bigger requests tokenise in a thread, off the event loop


class ModelEngine:
    def __init__(self, name: str, model_dir: Path, settings: ModelBackendSettings):
        self.name = name
        self.model_dir = Path(model_dir)
        self.settings = settings
        self.tokenizer = None
        self.runtime = None
        self.batcher = DynamicBatcher(self.infer, settings.batching, name)
        self.version: str | None = None
        self.card: dict = {}
        self.config = None
        self.active_requests = 0  # callers inside logits(); a retired engine closes when this is 0
        self.reward_column: int | None = None  # set by the backend: which logit column is the reward
        self.max_length = settings.max_length or DEFAULT_MAX_LENGTH

    def load(self) -> "ModelEngine":
        """Heavy, synchronous: read weights, export/compile. Call from a worker thread."""
        from transformers import AutoConfig, AutoTokenizer

        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"no Hugging Face model folder at {self.model_dir} (config.json missing)")
        self.card = model_store.read_card(self.model_dir)
        self.version = model_store.version(self.model_dir)
        # Truncate exactly as training did unless the config says otherwise.
        trained = self.card.get("tokenization", {}).get("max_length")
        self.max_length = self.settings.max_length or trained or DEFAULT_MAX_LENGTH
        self.config = AutoConfig.from_pretrained(self.model_dir, trust_remote_code=False)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, trust_remote_code=False)
        self.runtime = self._make_runtime()
        precision = self.runtime.description.get("precision", "fp32")
        if precision != "fp32":  # a cheaper graph gives (slightly) different rewards: say so in the version
            self.version = f"{self.version}+{precision}"
        log.info("%s: loaded %s with %s", self.name, self.version, self.runtime.description)
        return self

    def _make_runtime(self):
        from reward_service.engine.fidelity import sample_texts
        from reward_service.engine.runtime import make_runtime

        samples = self.encode(sample_texts())
        feeds = pad_batch(samples.input_ids, samples.token_type_ids, self.pad_id)
        return make_runtime(self.model_dir, self.settings, feeds)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def infer(self, input_ids: list[list[int]], token_type_ids: list[list[int]]) -> np.ndarray:
        """Synchronous forward pass on one batch (runs in the batcher's thread)."""
        return self.runtime.run(pad_batch(input_ids, token_type_ids, self.pad_id))

    def encode(self, texts: list[str], pairs: list[str] | None = None):
        return encode_texts(self.tokenizer, texts, pairs, self.max_length)

    async def logits(self, texts: list[str], pairs: list[str] | None = None, deadline: float | None = None) -> np.ndarray:
        self.active_requests += 1
        try:
            if sum(map(len, texts)) + sum(map(len, pairs or [])) > INLINE_TOKENIZE_CHARS:
                encoded = await asyncio.to_thread(self.encode, texts, pairs)
            else:
                encoded = self.encode(texts, pairs)
            return await self.batcher.submit(encoded.input_ids, encoded.token_type_ids, deadline)
        finally:
            self.active_requests -= 1

    async def drain(self, timeout_s: float) -> None:
        """Wait until no request is using this engine (or `timeout_s` passes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.active_requests and loop.time() < deadline:
            await asyncio.sleep(0.02)

    def describe(self) -> dict:
        described = dict(self.runtime.description) if self.runtime else {}
        described["max_length"] = self.max_length
        described["batching"] = self.settings.batching.model_dump()
        return described

    async def close(self) -> None:
        await self.batcher.close()
