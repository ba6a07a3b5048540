"""The FastAPI app factory: the parts, their wiring, the routers. Routes live in `routes/`."""

from __future__ import annotations

import asyncio
import inspect
from contextlib import asynccontextmanager

from fastapi import FastAPI

from reward_service.auth import Authenticator
from reward_service.backends import Backend
from reward_service.config import Settings
from reward_service.metrics import Metrics
from reward_service.registry import BackendRegistry
from reward_service.routes import admin, docs, operations, raters, scoring
from reward_service.routes.errors import COMMON_ERRORS, install_handlers
from reward_service.routes.limits import BodySizeLimit
from reward_service.routes.security_headers import SecurityHeaders
from reward_service.scoring import Scorer
from reward_service.throttle import FailedAuthThrottle


# FastAPI's native OpenTelemetry hooks (fastapi >= 0.16x) ask the global providers on every
# request whether anyone listens; this service reports through /metrics, so they are off.
# Measured: about 5% of the event loop's time per single-item /score request.
_NO_NATIVE_TELEMETRY = ({"telemetry": {"tracing": False, "metrics": False, "logs": False}}
                        if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {})


def create_app(
    settings: Settings,
    backends: dict[str, Backend] | None = None,
    load_in_background: bool = True,
    config_path: str | None = None,
) -> FastAPI:
    """Build an app for these settings. Backends load at start-up, in the background
    by default so /healthz answers at once and /readyz turns true when they are loaded.
    `config_path` is re-read by the reload route (None: the embedded defaults)."""
    # Raises ValueError for an unreadable key file, or a rater token that is a key in one.
    authenticator = Authenticator(settings.auth, settings.rater_tokens())
    registry = BackendRegistry(settings, backends)
    metrics = Metrics(registry.backends)
    _observe(registry, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.ensure_future(registry.load_all())
        if not load_in_background:
            await loading
        yield
        loading.cancel()
        await registry.close_all()

    app = FastAPI(
        **_NO_NATIVE_TELEMETRY,
        title="reward-service",
        description="Rewards for RLHF over HTTP: POST (prompt, response) pairs, get one score each.",
        version=_package_version(),
        lifespan=lifespan,
        responses=COMMON_ERRORS,
        docs_url=None,  # served by routes.docs, from the package
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.config_path = config_path
    app.state.authenticator = authenticator
    app.state.auth_throttle = FailedAuthThrottle(settings.auth.failed_auth_limit, settings.auth.failed_auth_window_s)
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.scorer = Scorer(registry, settings.server, metrics)
    app.add_middleware(BodySizeLimit, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(SecurityHeaders)  # added last: outermost, so the 413 above carries the headers too
    install_handlers(app)
    for routes in (scoring, raters, admin, operations, docs):
        app.include_router(routes.router)
    return app


def _observe(registry: BackendRegistry, metrics: Metrics) -> None:
    """Metrics hear every forward pass and every stored rating."""
    for name, backend in registry.backends.items():
        for batcher in backend.batchers():
            batcher.stats.observers.append(metrics.batch_observer(name))
    for backend in registry.queues():
        backend.queue.rating_observers.append(metrics.rating_observer(backend.name))


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reward-service")
    except PackageNotFoundError:
        return "0.0.0+local"
