"""`sentiment`: a sequence classifier; the reward is P(positive label)."""

from __future__ import annotations

import asyncio

import numpy as np

from reward_service import model_store
from reward_service.backends.base import Backend, Pair
from reward_service.config import SentimentBackendSettings
from reward_service.engine.model import ModelEngine


def positive_index(setting: int | str | None, id2label: dict, card: dict) -> int:
    """Which logit column is the reward: by config, else the model card, else a label named positive."""
    labels = {int(k): str(v) for k, v in id2label.items()}
    if setting is None:
        setting = card.get("positive_label")
    if setting is None:
        matches = [i for i, name in labels.items() if name.lower() in ("positive", "pos")]
        if len(matches) == 1:
            return matches[0]
        raise ValueError(f"cannot tell which label is positive among {labels}; set positive_label in the config")
    if isinstance(setting, int):
        if setting not in labels:
            raise ValueError(f"positive_label {setting} is not a label index of this model ({labels})")
        return setting
    by_name = {name.lower(): i for i, name in labels.items()}
    if setting.lower() not in by_name:
        raise ValueError(f"positive_label {setting!r} is not a label of this model ({labels})")
    return by_name[setting.lower()]


class SentimentBackend(Backend):
    type = "sentiment"

    def __init__(self, name: str, settings: SentimentBackendSettings):
        super().__init__(name)
        self.settings = settings
        self.engine = ModelEngine(name, model_store.resolve(settings.model), settings)
        self.positive = 1

    @property
    def model_version(self) -> str:
        return self.engine.version or self.settings.model

    async def load(self) -> None:
        await asyncio.to_thread(self.engine.load)
        self.positive = positive_index(self.settings.positive_label, self.engine.config.id2label, self.engine.card)
        self.ready = True

    async def close(self) -> None:
        await self.engine.close()

    async def score(self, pairs: list[Pair], deadline: float | None = None) -> list[float]:
        if self.settings.use_prompt:
            logits = await self.engine.logits([p.prompt for p in pairs], [p.response for p in pairs], deadline)
        else:
            logits = await self.engine.logits([p.response for p in pairs], None, deadline)
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        return probs[:, self.positive].astype(float).tolist()

    def batchers(self) -> list:
        return [self.engine.batcher]

    def details(self) -> dict:
        labels = self.engine.config.id2label if self.engine.config else {}
        return {
            "range": [0.0, 1.0],
            "positive_label": labels.get(self.positive, self.positive),
            "use_prompt": self.settings.use_prompt,
            "model_path": str(self.engine.model_dir),
            "held_out_accuracy": self.engine.card.get("held_out_accuracy"),
            **self.engine.describe(),
        }
