"""The values every layer passes around: one item to score.

Routes build items from requests; the scorer, the backends, the engine and the
human queue read them. Living here, at the bottom, lets each of those import
them without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    """A prompt and the policy's response to it: what one reward is given for."""

    prompt: str
    response: str

    def key(self) -> list:
        """What identifies the item for idempotency fingerprints (JSON-serialisable)."""
        return [self.prompt, self.response]


@dataclass(frozen=True)
class Scored:
    """A backend's answer for a list of items: one score each, and the exact version of what
    produced them (read together, so a hot reload mid-request cannot mismatch them)."""

    scores: list[float]
    model: str
    members: dict[str, list[float]] | None = None  # ensembles: each member's own scores
