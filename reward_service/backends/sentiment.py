"""`sentiment`: a sequence classifier; the reward is P(positive label)."""

from __future__ import annotations

import numpy as np

from reward_service.backends.model_backend import ModelBackend
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


class SentimentBackend(ModelBackend):
    type = "sentiment"

    def prepare(self, engine: ModelEngine) -> None:
        if engine.config.num_labels < 2:
            raise ValueError(f"{engine.model_dir} has a single output; serve it with type: learned-rm")
        engine.reading = positive_index(engine.settings.positive_label, engine.config.id2label, engine.card)

    def rewards(self, engine: ModelEngine, logits: np.ndarray) -> np.ndarray:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (shifted / shifted.sum(axis=1, keepdims=True))[:, engine.reading]

    def details(self) -> dict:
        labels = self.engine.config.id2label if self.engine.config else {}
        return {
            "range": [0.0, 1.0],
            "positive_label": labels.get(self.engine.reading, self.engine.reading),
            "held_out_accuracy": self.engine.card.get("held_out_accuracy"),
            **({"license": self.engine.card["license"]} if "license" in self.engine.card else {}),
            **super().details(),
        }
