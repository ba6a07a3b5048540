"""`ensemble`: a weighted sum of other backends' rewards, members scored concurrently."""

from __future__ import annotations

import asyncio

import numpy as np

from reward_service.backends.base import DEFAULT_OPTIONS, Backend
from reward_service.config import EnsembleBackendSettings
from reward_service.items import Item, ScoreOptions, Scored


class EnsembleBackend(Backend):
    type = "ensemble"

    def __init__(self, name: str, settings: EnsembleBackendSettings, members: dict[str, Backend]):
        super().__init__(name, settings)
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
        return self._version([self.members[m.backend].model_version for m in self.settings.members])

    def _version(self, member_versions: list[str]) -> str:
        parts = [f"{m.weight:g}*{m.backend}:{v}" for m, v in zip(self.settings.members, member_versions)]
        return "ensemble(" + " + ".join(parts) + ")"

    @property
    def returns_members(self) -> bool:
        return self.settings.return_members

    def _standardiser(self, member) -> tuple[float, float]:
        if not member.normalize:
            return 0.0, 1.0
        if member.mean is not None and member.std is not None:
            return member.mean, member.std
        stored = self.members[member.backend].normalization()
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

    async def score(self, items: list[Item], deadline: float | None = None,
                    options: ScoreOptions = DEFAULT_OPTIONS) -> Scored:
        """The weighted sum, each member's scores, and the version built from the members that
        scored; an item counts as truncated if any member cut it."""
        names = [m.backend for m in self.settings.members]
        results = await asyncio.gather(*(self.members[n].score(items, deadline, options) for n in names))
        total = np.zeros(len(items))
        for member, scored in zip(self.settings.members, results):
            mean, std = self._standardiser(member)
            total += member.weight * (np.asarray(scored.scores) - mean) / std
        cuts = [r.truncated for r in results if r.truncated is not None]
        return Scored(total.tolist(), self._version([r.model for r in results]),
                      members={n: r.scores for n, r in zip(names, results)},
                      truncated=[any(flags) for flags in zip(*cuts)] if cuts else None,
                      notes=[note for r in results for note in r.notes or []] or None,
                      verdicts={k: v for r in results for k, v in (r.verdicts or {}).items()} or None)

    def details(self) -> dict:
        return {"members": [m.model_dump() for m in self.settings.members], "return_members": self.settings.return_members}
