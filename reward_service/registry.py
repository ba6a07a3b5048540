"""The live set of named backends: built from config, loaded in the background."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from reward_service.backends import Backend, QueuedBackend, create_backends
from reward_service.config import Settings
from reward_service.errors import InvalidInput, NotReady, ReloadFailed, RestartNeeded, UnknownBackend, shown

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reloaded:
    """What a reload switched to: the versions, and how the new model is served (the engine's
    notes say why it differs from what the config asked, e.g. int8 refused for fidelity)."""

    previous: str
    model: str
    runtime: str | None
    precision: str | None
    notes: list[str]


class BackendRegistry:
    def __init__(self, settings: Settings, backends: dict[str, Backend] | None = None):
        self.settings = settings
        self.backends = backends if backends is not None else create_backends(settings)
        self.default = settings.default_backend
        self._reload_locks: dict[str, asyncio.Lock] = {}

    def find(self, name: str) -> Backend:
        backend = self.backends.get(name)
        if backend is None:
            known = sorted(self.backends)
            raise UnknownBackend(
                f"unknown backend {shown(name)}; known backends: {', '.join(known)}", details={"known_backends": known}
            )
        return backend

    def get(self, name: str | None) -> Backend:
        """The named (or default) backend, ready to score."""
        name = name or self.default
        backend = self.find(name)
        if not backend.ready:
            reason = backend.error or "still loading"
            retry = None if backend.error else 5
            raise NotReady(f"backend {name!r} is not ready: {reason}", retry_after_s=retry)
        return backend

    async def _load_one(self, backend: Backend) -> None:
        try:
            await backend.load()
            backend.error = None
        except Exception as exc:  # a broken model must not take the others down
            backend.ready = False
            backend.error = f"{type(exc).__name__}: {exc}"
            log.error("backend %r failed to load: %s", backend.name, backend.error)

    async def load_all(self) -> None:
        """One backend at a time (loading in parallel threads raced inside transformers'
        lazy imports, and the cores are busy exporting anyway); human queues after the
        backends they fall back to, ensembles last."""
        order = {"human": 1, "ensemble": 2}
        ordered = sorted(self.backends.values(), key=lambda b: order.get(b.type, 0))
        for backend in ordered:
            await self._load_one(backend)

    async def reload(self, name: str, settings: Settings) -> Reloaded:
        """Re-read backend `name`'s entry from fresh settings and hot-swap its model. Only
        that entry is applied (model, runtime, precision, batching, ...): adding or removing a
        backend, changing its type, and every other section need a restart. The model location
        comes only from the config, never from a request."""
        new = settings.backends.get(name)
        if name not in self.backends and new is not None:
            raise RestartNeeded(f"backend {name!r} is in the config file, but the service started without it: a "
                                "reload swaps the model of a backend the service runs; restart the service to add one")
        backend = self.find(name)
        if not backend.reloadable:
            raise InvalidInput(f"backend {name!r} ({backend.type}) has no model to reload")
        if new is None:
            raise RestartNeeded(f"backend {name!r} is no longer in the config file; restart the service to remove it")
        if new.type != backend.type:
            raise RestartNeeded(f"backend {name!r} changed type ({backend.type} -> {new.type}) in the config file; "
                                "restart the service to apply it")
        lock = self._reload_locks.setdefault(name, asyncio.Lock())
        async with lock:
            try:
                previous, current = await backend.reload(new)
            except Exception as exc:
                raise ReloadFailed(
                    f"reload of {name!r} failed, still serving {backend.model_version}: {type(exc).__name__}: {exc}",
                    details={"serving": backend.model_version},
                ) from exc
        served = backend.details()
        reloaded = Reloaded(previous, current, served.get("runtime"), served.get("precision"), served.get("notes", []))
        log.info("backend %r reloaded: %s -> %s, %s %s%s", name, previous, current, reloaded.runtime,
                 reloaded.precision, "".join(f"; {note}" for note in reloaded.notes))
        return reloaded

    async def close_all(self) -> None:
        await asyncio.gather(*(b.close() for b in self.backends.values()), return_exceptions=True)

    def queues(self) -> list[QueuedBackend]:
        """Backends that hold jobs (the human queues)."""
        return [b for b in self.backends.values() if isinstance(b, QueuedBackend)]

    def queue(self, name: str | None) -> QueuedBackend:
        """The named human queue, or the only/first one when no name is given."""
        queues = self.queues()
        if name is None:
            if not queues:
                raise UnknownBackend("no human backend is configured", details={"known_backends": sorted(self.backends)})
            backend = queues[0]
        else:
            backend = self.find(name)
            if backend not in queues:
                raise InvalidInput(f"backend {name!r} is a {backend.type} backend, not a human queue")
        if not backend.ready:
            raise NotReady(f"human backend {backend.name!r} is not ready: {backend.error or 'still loading'}",
                           retry_after_s=None if backend.error else 5)
        return backend

