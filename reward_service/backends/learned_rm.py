"""`learned-rm`: a reward model; the reward is read from its head.

A one-output head (num_labels=1) gives the reward directly. A multi-objective
head (num_labels > 1, e.g. ArmoRM's 19 objectives) needs `objectives` naming its
columns and `reward` saying which column, or which weighted columns, make the
reward; a request with `return_objectives` gets every column back by name. The
reward is optionally standardised with the mean/std stored at training time (in
the model card, or in config.json as OpenRLHF saves them).
"""

from __future__ import annotations

import numpy as np

from reward_service.backends.model_backend import ModelBackend
from reward_service.engine.model import ModelEngine


def stored_normalization(engine: ModelEngine) -> tuple[float, float] | None:
    """(mean, std) of the model's rewards stored at training time: in the model card
    (`train-rm`), else in config.json (`mean`, `std`: how OpenRLHF saves them)."""
    stats = engine.card.get("normalization") or {
        "mean": getattr(engine.config, "mean", None), "std": getattr(engine.config, "std", None)}
    if isinstance(stats.get("mean"), (int, float)) and isinstance(stats.get("std"), (int, float)) and stats["std"] > 0:
        return float(stats["mean"]), float(stats["std"])
    return None


def reward_weights(settings, columns: int) -> np.ndarray:
    """Weights over the output columns that form the reward (raises if the config cannot say)."""
    if settings.objectives is None:
        if columns != 1:
            raise ValueError(f"the model has {columns} outputs: name them with `objectives` and pick the reward "
                             "with `reward` (one objective, or weights)")
        if settings.reward is not None:
            raise ValueError("`reward` needs `objectives` naming the model's outputs")
        return np.ones(1)
    if len(settings.objectives) != columns:
        raise ValueError(f"`objectives` names {len(settings.objectives)} columns; the model has {columns}")
    chosen = settings.reward if settings.reward is not None else (
        settings.objectives[0] if columns == 1 else None)
    if chosen is None:
        raise ValueError("with several objectives, `reward` must name one or give weights")
    weights = {chosen: 1.0} if isinstance(chosen, str) else chosen
    unknown = sorted(set(weights) - set(settings.objectives))
    if unknown:
        raise ValueError(f"`reward` names {', '.join(unknown)}, not among objectives {settings.objectives}")
    return np.array([weights.get(name, 0.0) for name in settings.objectives])


class LearnedRMBackend(ModelBackend):
    type = "learned-rm"

    def prepare(self, engine: ModelEngine) -> None:
        engine.reading = reward_weights(engine.settings, engine.outputs_per_item)
        if engine.settings.normalize and stored_normalization(engine) is None:
            raise ValueError(f"normalize: true, but neither {engine.model_dir}/model_card.json nor its config.json "
                             "stores a normalization mean and std")

    def rewards(self, engine: ModelEngine, outputs: np.ndarray) -> np.ndarray:
        if outputs.shape[1] != len(engine.reading):
            raise ValueError(f"the model gave {outputs.shape[1]} outputs per item; its config says "
                             f"{len(engine.reading)} (set `output` to the reward's attribute)")
        rewards = outputs @ engine.reading
        if engine.settings.normalize:
            mean, std = stored_normalization(engine)
            rewards = (rewards - mean) / std
        return rewards

    def objectives(self, engine: ModelEngine, outputs: np.ndarray) -> dict[str, list[float]] | None:
        names = engine.settings.objectives
        if names is None:
            return None
        return {name: outputs[:, i].astype(float).tolist() for i, name in enumerate(names)}

    def normalization(self) -> tuple[float, float] | None:
        return stored_normalization(self.engine)

    def details(self) -> dict:
        return {
            "normalize": self.settings.normalize,
            "normalization": stored_normalization(self.engine),
            "objectives": self.settings.objectives,
            "reward": self.settings.reward,
            "output": self.settings.output,
            "held_out_pairwise_accuracy": self.engine.card.get("held_out_pairwise_accuracy"),
            **super().details(),
        }
