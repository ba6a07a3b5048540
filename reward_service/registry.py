"""The live set of named backends: built from config, loaded in the background."""

from __future__ import annotations

import asyncio
import logging

from reward_service.backends import Backend, create_backends
from reward_service.config import Settings
from reward_service.errors import NotReady, UnknownBackend

log = logging.getLogger(__name__)


class BackendRegistry:
    def __init__(self, settings: Settings, backends: dict[str, Backend] | None = None):
        self.settings = settings
        self.backends = backends if backends is not None else create_backends(settings)
        self.default = settings.default_backend

    def get(self, name: str | None) -> Backend:
        """The named (or default) backend, ready to score."""
        name = name or self.default
        backend = self.backends.get(name)
        if backend is None:
            known = sorted(self.backends)
            raise UnknownBackend(
                f"unknown backend {name!r}; known backends: {', '.join(known)}", details={"known_backends": known}
            )
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
        await asyncio.gather(*(self._load_one(b) for b in self.backends.values()))

    async def close_all(self) -> None:
        await asyncio.gather(*(b.close() for b in self.backends.values()), return_exceptions=True)

    @property
    def all_ready(self) -> bool:
        return all(b.ready for b in self.backends.values())
