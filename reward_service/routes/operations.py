"""Operations: liveness, readiness, what is served, and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reward_service import errors, schemas
from reward_service.backends import Backend
from reward_service.routes.dependencies import (
    APIKey, MetricsDep, RegistryDep, check_api_key_now, require_metrics_access,
)

router = APIRouter(tags=["service"])


@router.get("/healthz")
async def healthz() -> dict:
    """Alive: the process answers. Says nothing about models."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "some backend is not loaded"}})
async def readyz(request: Request, registry: RegistryDep,
                 verbose: bool = Query(False, description="with an API key: each backend's state and error")):
    """Ready: every configured backend has loaded its model. Without a key the reply is what a
    load balancer needs, `{"ready", "reason"}` (`loading` or `load_failed`): no backend
    names, model paths or database addresses. `?verbose=true` with an API key adds each
    backend's state and error (as `/v1/backends` does)."""
    states = {name: _state(backend) for name, backend in registry.backends.items()}
    problems = set(states.values()) - {"ready"}
    reason = ("load_failed" if "load_failed" in problems else "loading") if problems else None
    body: dict = {"ready": not problems, "reason": reason}
    if verbose:
        await check_api_key_now(request)
        body["backends"] = {name: {"ready": backend.ready, "reason": states[name], "error": backend.error}
                            for name, backend in registry.backends.items()}
    return JSONResponse(body, status_code=503 if problems else 200)


def _state(backend: Backend) -> str:
    """A short code a load balancer may see: ready, loading, or load_failed (never the error)."""
    if backend.ready:
        return "ready"
    return "load_failed" if backend.error else "loading"


@router.get("/v1/backends", response_model=schemas.BackendList, dependencies=[APIKey])
async def list_backends(registry: RegistryDep) -> schemas.BackendList:
    return schemas.BackendList(
        default_backend=registry.default,
        backends=[
            schemas.BackendInfo(
                name=name, type=backend.type, model=backend.model_version if backend.ready else None,
                ready=backend.ready, default=name == registry.default, error=backend.error,
                details=backend.details() if backend.ready else {},
            )
            for name, backend in registry.backends.items()
        ],
    )


@router.get("/metrics", response_class=Response, dependencies=[Depends(require_metrics_access)])
async def prometheus_metrics(registry: RegistryDep, metrics: MetricsDep) -> Response:
    metrics.model_info.clear()  # only the versions served now
    for name, backend in registry.backends.items():
        metrics.ready.labels(name).set(1 if backend.ready else 0)
        metrics.queue_depth.labels(name).set(backend.queued_items())
        if backend.ready:
            metrics.model_info.labels(name, backend.model_version).set(1)
    for backend in registry.queues():
        if backend.ready:
            try:
                stats = await backend.queue.stats()
            except errors.BackendFailed:
                continue  # the store is down: keep the last values; reward_backend_ready still says 1
            metrics.tasks_pending.labels(backend.name).set(stats["pending"])
            metrics.oldest_pending.labels(backend.name).set(stats["oldest_pending_age_s"])
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
