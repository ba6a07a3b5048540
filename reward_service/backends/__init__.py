"""Backends: one module per way of producing a reward, all behind `Backend`."""

from __future__ import annotations

from reward_service.backends.base import Backend, Pair
from reward_service.config import (
    EnsembleBackendSettings,
    LearnedRMBackendSettings,
    LexiconBackendSettings,
    SentimentBackendSettings,
    Settings,
)


def create_backend(name: str, settings, others: dict[str, Backend] | None = None) -> Backend:
    if isinstance(settings, SentimentBackendSettings):
        from reward_service.backends.sentiment import SentimentBackend

        return SentimentBackend(name, settings)
    if isinstance(settings, LearnedRMBackendSettings):
        from reward_service.backends.learned_rm import LearnedRMBackend

        return LearnedRMBackend(name, settings)
    if isinstance(settings, LexiconBackendSettings):
        from reward_service.backends.lexicon import LexiconBackend

        return LexiconBackend(name, settings)
    if isinstance(settings, EnsembleBackendSettings):
        from reward_service.backends.ensemble import EnsembleBackend

        members = {m.backend: (others or {})[m.backend] for m in settings.members}
        return EnsembleBackend(name, settings, members)
    raise TypeError(f"no backend implements settings of type {type(settings).__name__}")


def create_backends(settings: Settings) -> dict[str, Backend]:
    """Plain backends first, then ensembles, which score through them."""
    backends: dict[str, Backend] = {}
    for name, spec in settings.backends.items():
        if not isinstance(spec, EnsembleBackendSettings):
            backends[name] = create_backend(name, spec)
    for name, spec in settings.backends.items():
        if isinstance(spec, EnsembleBackendSettings):
            backends[name] = create_backend(name, spec, backends)
    return {name: backends[name] for name in settings.backends}


__all__ = ["Backend", "Pair", "create_backend", "create_backends"]
