"""Backends: one module per way of producing a reward, all behind `Backend`."""

from __future__ import annotations

from reward_service.backends.base import Backend, QueuedBackend
from reward_service import model_store
from reward_service.config import (
    CodeBackendSettings,
    EnsembleBackendSettings,
    FormatBackendSettings,
    HumanBackendSettings,
    LearnedRMBackendSettings,
    LexiconBackendSettings,
    MathBackendSettings,
    SentimentBackendSettings,
    Settings,
)


def secret_paths(settings: Settings) -> tuple[str, ...]:
    """What sandboxed code must not read: the config file, key files and the model cache."""
    paths = [settings.source, settings.auth.api_keys_file, settings.auth.admin_keys_file, str(model_store.home())]
    return tuple(str(p) for p in paths if p)


def create_backend(name: str, settings, others: dict[str, Backend] | None = None,
                   hidden_paths: tuple[str, ...] = ()) -> Backend:
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
    if isinstance(settings, HumanBackendSettings):
        from reward_service.backends.human import HumanBackend

        return HumanBackend(name, settings, (others or {}).get(settings.fallback) if settings.fallback else None)
    if isinstance(settings, MathBackendSettings):
        from reward_service.backends.verifiers import MathBackend

        return MathBackend(name, settings)
    if isinstance(settings, CodeBackendSettings):
        from reward_service.backends.verifiers import CodeBackend

        return CodeBackend(name, settings, hidden_paths)
    if isinstance(settings, FormatBackendSettings):
        from reward_service.backends.verifiers import FormatBackend

        return FormatBackend(name, settings)
    raise TypeError(f"no backend implements settings of type {type(settings).__name__}")


def create_backends(settings: Settings) -> dict[str, Backend]:
    """Plain backends first, then human queues (which may fall back to one), then
    ensembles, which score through the others."""
    backends: dict[str, Backend] = {}
    for kinds in ((lambda s: not isinstance(s, (EnsembleBackendSettings, HumanBackendSettings))),
                  (lambda s: isinstance(s, HumanBackendSettings)),
                  (lambda s: isinstance(s, EnsembleBackendSettings))):
        for name, spec in settings.backends.items():
            if kinds(spec):
                backends[name] = create_backend(name, spec, backends, secret_paths(settings))
    return {name: backends[name] for name in settings.backends}


__all__ = ["Backend", "QueuedBackend", "create_backend", "create_backends"]
