"""`learned-rm`: a reward model with a scalar head; the reward is its logit,
optionally standardised with the mean/std stored in its model card at training time."""

from __future__ import annotations

import numpy as np

from reward_service.backends.model_backend import ModelBackend
from reward_service.engine.model import ModelEngine


def stored_normalization(card: dict) -> tuple[float, float] | None:
    stats = card.get("normalization") or {}
    if "mean" in stats and "std" in stats and stats["std"] > 0:
        return float(stats["mean"]), float(stats["std"])
    return None


class LearnedRMBackend(ModelBackend):
    type = "learned-rm"

    def prepare(self, engine: ModelEngine) -> None:
        if engine.config.num_labels != 1:
            raise ValueError(
                f"{engine.model_dir} has {engine.config.num_labels} outputs; a reward model has one (num_labels=1)"
            )
        if engine.settings.normalize and stored_normalization(engine.card) is None:
            raise ValueError(f"normalize: true, but {engine.model_dir}/model_card.json stores no normalization mean/std")

    def rewards(self, engine: ModelEngine, logits: np.ndarray) -> np.ndarray:
        rewards = logits[:, 0]
        if engine.settings.normalize:
            mean, std = stored_normalization(engine.card)
            rewards = (rewards - mean) / std
        return rewards

    def normalization(self) -> tuple[float, float] | None:
        return stored_normalization(self.engine.card)

    def details(self) -> dict:
        return {
            "normalize": self.settings.normalize,
            "normalization": self.engine.card.get("normalization"),
            "held_out_pairwise_accuracy": self.engine.card.get("held_out_pairwise_accuracy"),
            **super().details(),
        }
