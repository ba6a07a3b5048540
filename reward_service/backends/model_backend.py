"""Shared by the backends that serve a model through the engine: load, hot reload, close.

A reload builds the new engine beside the old one and swaps the reference in one
assignment; requests already queued on the old engine finish there, then the
old engine is closed.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from reward_service import model_store
from reward_service.backends.base import DEFAULT_OPTIONS, Backend
from reward_service.engine.model import ModelEngine
from reward_service.items import Item, ScoreOptions, Scored

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 120


class ModelBackend(Backend):
    reloadable = True

    def __init__(self, name: str, settings):
        super().__init__(name, settings)
        self.engine = self._new_engine(settings)
        self._retired: set[asyncio.Task] = set()

    def _new_engine(self, settings) -> ModelEngine:
        return ModelEngine(self.name, model_store.resolve(settings.model), settings)

    @property
    def model_version(self) -> str:
        return self.engine.version or self.settings.model

    def prepare(self, engine: ModelEngine) -> None:
        """Check a freshly loaded engine against its own settings (`engine.settings`: on a
        reload, the new ones); raise if unusable."""

    def rewards(self, engine: ModelEngine, outputs: np.ndarray) -> np.ndarray:
        """One reward per row of the model's outputs."""
        raise NotImplementedError

    def objectives(self, engine: ModelEngine, outputs: np.ndarray) -> dict[str, list[float]] | None:
        """Every named output column, for requests that ask (multi-objective heads)."""
        return None

    async def load(self) -> None:
        await asyncio.to_thread(self.engine.load)
        self.prepare(self.engine)
        self.ready = True

    async def reload(self, settings) -> tuple[str, str]:
        """Load `settings`' model beside the current one, then switch. Returns (old, new) versions.
        On failure the current model keeps serving and the error propagates."""
        engine = self._new_engine(settings)
        engine.batcher.stats = self.engine.batcher.stats  # counters and metric observers carry over
        try:
            await asyncio.to_thread(engine.load)
            self.prepare(engine)
        except BaseException:
            await engine.close()
            engine.runtime = None  # its memory (a GPU's too) is not held by a failed reload
            raise
        old_engine, old_version = self.engine, self.model_version
        self.engine, self.settings = engine, settings  # the switch: new requests use the new engine
        self.ready, self.error = True, None
        task = asyncio.ensure_future(self._retire(old_engine))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
        log.info("%s: reloaded %s -> %s", self.name, old_version, self.model_version)
        return old_version, self.model_version

    async def _retire(self, engine: ModelEngine) -> None:
        await engine.drain(DRAIN_TIMEOUT_S)
        await engine.close()

    async def close(self) -> None:
        await asyncio.gather(*self._retired, return_exceptions=True)
        await self.engine.close()

    async def score(self, items: list[Item], deadline: float | None = None,
                    options: ScoreOptions = DEFAULT_OPTIONS) -> Scored:
        engine = self.engine  # one engine for the whole request, even if a reload switches mid-way
        outputs = await engine.outputs(items, deadline, options.truncation)
        rewards = self.rewards(engine, outputs.values).astype(float).tolist()
        objectives = self.objectives(engine, outputs.values) if options.objectives else None
        return Scored(rewards, engine.version, truncated=outputs.truncated if any(outputs.truncated) else None,
                      objectives=objectives, notes=outputs.notes or None)

    def batchers(self) -> list:
        return [self.engine.batcher]

    def details(self) -> dict:
        return {
            "use_prompt": self.settings.use_prompt,
            "model_path": str(self.engine.model_dir),
            **self.engine.describe(),
        }
