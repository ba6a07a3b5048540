"""`ensemble`: a weighted sum of other backends' rewards, members scored concurrently."""

from __future__ import annotations

import asyncio

import numpy as np

from reward_service.backends.base import Backend, Pair
from reward_service.config import EnsembleBackendSettings


class EnsembleBackend(Backend):
    type = "ensemble"

    def __init__(self, name: str, settings: EnsembleBackendSettings, members: dict[str, Backend]):
        super().__init__(name)
        self.settings = settings
        self.members = members

    @property
    def ready(self) -> bool:
        """Ready when every member is, and the ensemble's own checks passed."""
        return self._checked and self.error is None and all(m.ready for m in self.members.values())

    @ready.setter
    def ready(self, value: bool) -> None:
        self._checked = value

    @property
    def model_version(self) -> str:
        parts = [f"{m.weight:g}*{m.backend}:{self.members[m.backend].model_version}" for m in self.settings.members]
        return "ensemble(" + " + ".join(parts) + ")"

    def _standardiser(self, member) -> tuple[float, float]:
        if not member.normalize:
            return 0.0, 1.0
        if member.mean is not None and member.std is not None:
            return member.mean, member.std
        stored = getattr(self.members[member.backend], "normalization", lambda: None)()
        if stored is None:
            raise ValueError(
                f"ensemble {self.name!r}: member {member.backend!r} has no stored normalization; set mean and std"
            )
        return stored

    async def load(self) -> None:
        """Members load themselves (the registry loads them first); check each normalised member can be."""
        for member in self.settings.members:
            if self.members[member.backend].ready:
                self._standardiser(member)
        self.ready = True

    async def score_members(self, pairs: list[Pair], deadline: float | None = None) -> tuple[list[float], dict, str]:
        """(weighted scores, each member's scores, the version built from the members that scored)."""
        names = [m.backend for m in self.settings.members]
        results = await asyncio.gather(*(self.members[n].score_versioned(pairs, deadline) for n in names))
        total = np.zeros(len(pairs))
        for member, (scores, _) in zip(self.settings.members, results):
            mean, std = self._standardiser(member)
            total += member.weight * (np.asarray(scores) - mean) / std
        version = "ensemble(" + " + ".join(
            f"{m.weight:g}*{m.backend}:{v}" for m, (_, v) in zip(self.settings.members, results)) + ")"
        return total.tolist(), {n: s for n, (s, _) in zip(names, results)}, version

    async def score(self, pairs: list[Pair], deadline: float | None = None) -> list[float]:
        return (await self.score_members(pairs, deadline))[0]

    async def score_versioned(self, pairs: list[Pair], deadline: float | None = None) -> tuple[list[float], str]:
        scores, _, version = await self.score_members(pairs, deadline)
        return scores, version

    def details(self) -> dict:
        return {"members": [m.model_dump() for m in self.settings.members], "return_members": self.settings.return_members}
