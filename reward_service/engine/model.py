"""One served model: formatting + tokenizer + runtime + dynamic batcher.

Backends ask it for the raw outputs of items; it formats each item as the model's
card says (`formatting`), holds it to the model's length (rejecting it, or cutting
it from the left and saying so), batches and runs it. It knows nothing of HTTP,
of one model family, or of what the outputs mean.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reward_service import model_store
from reward_service.config import ModelBackendSettings
from reward_service.engine import chat_markup, formatting
from reward_service.engine.batcher import DynamicBatcher
from reward_service.engine.tokenization import Features, pad_batch
from reward_service.errors import InvalidInput
from reward_service.items import Item

log = logging.getLogger(__name__)

INLINE_TOKENIZE_CHARS = 4096  # requests with more text tokenise in a thread, off the event loop


@dataclass(frozen=True)
class Outputs:
    """The model's raw outputs, one row per item, and which items were cut to fit."""

    values: np.ndarray
    truncated: list[bool]
    notes: list[str]


class ModelEngine:
    def __init__(self, name: str, model_dir: Path, settings: ModelBackendSettings):
        self.name = name
        self.model_dir = Path(model_dir)
        self.settings = settings
        self.tokenizer = None
        self.runtime = None
        self.batcher = DynamicBatcher(self.infer, settings.batching, name, length=lambda row: len(row["input_ids"]))
        self.version: str | None = None
        self.card: dict = {}
        self.config = None
        self.active_requests = 0  # callers inside outputs(); a retired engine closes when this is 0
        self.reading = None  # set by the backend: how it reads rewards from the outputs (a column, weights)
        self.input_names: list[str] = []  # what the model takes: the tokenizer's inputs
        self.mode = settings.formatting  # the concrete formatting, once the tokenizer is known
        self.max_length: int | None = None
        self.outputs_per_item: int | None = None
        self.pad: formatting.PadToken | None = None

    def load(self) -> "ModelEngine":
        """Heavy, synchronous: read weights, export/compile. Call from a worker thread."""
        from transformers import AutoConfig, AutoTokenizer

        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"no Hugging Face model folder at {self.model_dir} (config.json missing)")
        self.card = model_store.read_card(self.model_dir)
        self.version = model_store.version(self.model_dir)
        trust = self.settings.trust_remote_code
        if trust:
            log.warning("%s: trust_remote_code is on: running the Python code in %s", self.name, self.model_dir)
        self.config = AutoConfig.from_pretrained(self.model_dir, trust_remote_code=trust)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, trust_remote_code=trust)
        self.mode = "concat" if not self.settings.use_prompt else \
            formatting.resolve_mode(self.tokenizer, self.settings.formatting, self.settings.chat_template)
        self.max_length = formatting.model_length_limit(self.config, self.tokenizer, self.settings.max_length)
        self.pad = _pad_token(self.config, self.tokenizer)
        self.input_names = [*dict.fromkeys([*self.tokenizer.model_input_names, "attention_mask"])]
        self._make_runtime()
        precision = self.runtime.description.get("precision", "fp32")
        if precision != "fp32":  # a cheaper graph gives (slightly) different rewards: say so in the version
            fused = self.runtime.description.get("graph_variant") == "fused"  # int8 of other kernels: other values
            self.version = f"{self.version}+{precision}{'-fused' if fused else ''}"
        log.info("%s: loaded %s with %s", self.name, self.version, self.runtime.description)
        return self

    def _make_runtime(self) -> None:
        """The runtime, checked on sample inputs; how many outputs its head gives per item."""
        from reward_service.engine.fidelity import sample_texts
        from reward_service.engine.runtime import make_runtime

        rows, _, _ = self.encode([Item("", text) for text in sample_texts()], "left")
        self.runtime = make_runtime(self.model_dir, self.settings, pad_batch(rows, self.pad.id, self.input_names),
                                    self.pad.id)
        self.outputs_per_item = self.infer(rows[:1]).shape[1]  # what the head gives, whatever num_labels says
        self.batcher.configure(self.runtime.batching)

    def infer(self, rows: list[Features]) -> np.ndarray:
        """Synchronous forward pass on one batch (runs in the batcher's thread)."""
        return self.runtime.run(pad_batch(rows, self.pad.id, self.input_names))

    def encode(self, items: list[Item], truncation: str) -> tuple[list[Features], list[bool], list[str]]:
        """Each item formatted, tokenised and held to the length limit: its features, whether it
        was cut, and notes on what was done. An item over the limit with `truncation: reject`, or
        one its formatting refuses, is InvalidInput naming it."""
        conversations, markups = zip(*(self._conversation(item) for item in items))
        try:
            encoded = formatting.encode(self.tokenizer, list(conversations), self.mode, self.settings.chat_template)
            fitted = formatting.fit_length(encoded, self.max_length, truncation)
        except formatting.TooLong as exc:
            raise InvalidInput(f"{exc}; or send `truncation: left`",
                               details={"item": exc.index, "tokens": exc.tokens, "limit": exc.limit}) from None
        except formatting.FormattingError as exc:
            raise InvalidInput(str(exc), details={"item": exc.index}) from None
        return [e.features() for e in fitted], [e.truncated for e in fitted], _markup_notes(markups)

    def _conversation(self, item: Item) -> tuple[list[dict], str | None]:
        """The conversation to format, and the chat markup it was recovered from (if it was)."""
        if not self.settings.use_prompt:  # the response alone, as plain text
            return [{"role": "assistant", "content": item.response}], None
        if item.rendered and self.mode == "chat_template":
            found = chat_markup.recover_conversation(item.prompt + item.response, item.prompt or None)
            if found is not None:
                return found.messages, found.markup
        return item.conversation(), None

    async def outputs(self, items: list[Item], deadline: float | None = None,
                      truncation: str | None = None) -> Outputs:
        self.active_requests += 1
        try:
            truncation = truncation or self.settings.truncation
            if sum(len(i.prompt) + len(i.response) for i in items) > INLINE_TOKENIZE_CHARS:
                rows, cut, notes = await asyncio.to_thread(self.encode, items, truncation)
            else:
                rows, cut, notes = self.encode(items, truncation)
            return Outputs(await self.batcher.submit(rows, deadline), cut, notes)
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
        described.update(
            formatting=self.mode, max_length=self.max_length, truncation=self.settings.truncation,
            pad_token=self.pad.source if self.pad else None, trust_remote_code=self.settings.trust_remote_code,
            batching=self.batcher.settings.model_dump(),
        )
        return described

    async def close(self) -> None:
        await self.batcher.close()


def _markup_notes(markups) -> list[str]:
    """One note per markup recovered from rendered text (OpenRLHF queries)."""
    counts: dict[str, int] = {}
    for markup in markups:
        if markup is not None:
            counts[markup] = counts.get(markup, 0) + 1
    return [f"{n} item(s) carried {markup} chat markup: the conversation was recovered and rendered with "
            "this reward model's own chat template" for markup, n in counts.items()]


def _pad_token(config, tokenizer) -> formatting.PadToken:
    """Batches are padded with the id the model itself treats as padding (its config's
    `pad_token_id`: decoders read the reward at the last token that is not it), else the
    tokenizer's pad token, else its EOS; then the model is told (see runtime.load_classifier)."""
    own = getattr(config.get_text_config(), "pad_token_id", None)
    if isinstance(own, int):
        return formatting.PadToken(own, "model config")
    return formatting.pad_token(tokenizer)
