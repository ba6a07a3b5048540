"""Backends: one module per way of producing a reward, all behind `Backend`."""

from __future__ import annotations

from reward_service.backends.base import Backend, Pair
from reward_service.config import LexiconBackendSettings, SentimentBackendSettings, Settings


def create_backend(name: str, settings) -> Backend:
    if isinstance(settings, SentimentBackendSettings):
        from reward_service.backends.sentiment import SentimentBackend

        return SentimentBackend(name, settings)
    if isinstance(settings, LexiconBackendSettings):
        from reward_service.backends.lexicon import LexiconBackend

        return LexiconBackend(name, settings)
    raise TypeError(f"no backend implements settings of type {type(settings).__name__}")


def create_backends(settings: Settings) -> dict[str, Backend]:
    return {name: create_backend(name, backend) for name, backend in settings.backends.items()}


__all__ = ["Backend", "Pair", "create_backend", "create_backends"]
