"""The one protocol every backend speaks.

A backend turns (prompt, response) pairs into one float each. It loads whatever
it needs in `load()` (never on the request path), reports readiness, and
describes itself for `/v1/backends` and for the `model` field of responses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple


class Pair(NamedTuple):
    prompt: str
    response: str


class Backend(ABC):
    type: str = "backend"

    def __init__(self, name: str):
        self.name = name
        self.ready = False
        self.error: str | None = None

    @property
    @abstractmethod
    def model_version(self) -> str:
        """Exact version of what produces the rewards, e.g. `sentiment-minilm-rt@3f2a9c1e`."""

    async def load(self) -> None:
        """Load models; called once at start-up, off the request path."""

    async def close(self) -> None:
        """Release workers and files."""

    @abstractmethod
    async def score(self, pairs: list[Pair], deadline: float | None = None) -> list[float]:
        """One reward per pair, same order. `deadline` is event-loop time."""

    async def score_versioned(self, pairs: list[Pair], deadline: float | None = None) -> tuple[list[float], str]:
        """Scores and the exact version that produced them. Backends whose model can be
        swapped while a request runs override this to read both from the same model."""
        version = self.model_version
        return await self.score(pairs, deadline), version

    def batchers(self) -> list:
        """The engine batchers this backend feeds, for queue and batch metrics."""
        return []

    def details(self) -> dict:
        """Backend-specific facts for /v1/backends (runtime, labels, ...)."""
        return {}
