"""The live set of named backends: built from config, loaded in the background."""

from __future__ import annotations

import asyncio
import logging

from reward_service.backends import Backend, QueuedBackend, create_backends
from reward_service.config import Settings
from reward_service.errors import InvalidInput, NotReady, ReloadFailed, UnknownBackend

log = logging.getLogger(__name__)


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
                f"unknown backend {name!r}; known backends: {', '.join(known)}", details={"known_backends": known}
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

    async def reload(self, name: str, settings: Settings) -> tuple[str, str]:
        """Re-read backend `name` from fresh settings and hot-swap its model.
        The model location comes only from the config, never from a request."""
        backend = self.find(name)
        if not backend.reloadable:
            raise InvalidInput(f"backend {name!r} ({backend.type}) has no model to reload")
        new = settings.backends.get(name)
        if new is None:
            raise ReloadFailed(f"backend {name!r} is no longer in the config; restart the service to remove it")
        if new.type != backend.type:
            raise ReloadFailed(f"backend {name!r} changed type ({backend.type} -> {new.type}); restart the service")
        lock = self._reload_locks.setdefault(name, asyncio.Lock())
        async with lock:
            try:
                return await backend.reload(new)
            except Exception as exc:
                raise ReloadFailed(
                    f"reload of {name!r} failed, still serving {backend.model_version}: {type(exc).__name__}: {exc}",
                    details={"serving": backend.model_version},
                ) from exc

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

    @property
    def all_ready(self) -> bool:
        return all(b.ready for b in self.backends.values())

