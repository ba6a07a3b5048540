"""The FastAPI app factory. Routes stay thin: parse, call the scorer, shape the reply."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from reward_service import config as config_module
from reward_service import errors, schemas
from reward_service.auth import Authenticator
from reward_service.backends import Backend, Pair
from reward_service.config import Settings
from reward_service.human import routes as human_routes
from reward_service.metrics import Metrics
from reward_service.registry import BackendRegistry
from reward_service.scoring import Scorer

log = logging.getLogger(__name__)

STATUS = {
    errors.InvalidInput: 422,
    errors.UnknownBackend: 404,
    errors.TooLarge: 413,
    errors.Conflict: 409,
    errors.Overloaded: 429,
    errors.NotReady: 503,
    errors.BackendFailed: 503,
    errors.DeadlineExceeded: 504,
    errors.ReloadFailed: 503,
    errors.NotFound: 404,
    errors.Unauthorized: 401,
    errors.TaskConflict: 409,
    errors.Forbidden: 403,
}
RETRYABLE = {429, 502, 503, 504}


def _documented(descriptions: dict[int, str]) -> dict:
    """OpenAPI `responses` entries: these statuses answer with the typed error body."""
    return {code: {"model": schemas.ErrorResponse, "description": text} for code, text in descriptions.items()}


COMMON_ERRORS = _documented({  # on every route: what any request can meet
    401: "missing or unknown key or rater token",
    403: "an API key where an admin key is needed",
    404: "unknown backend, job or task",
    413: "request body over the configured limit",
    422: "invalid input; do not retry unchanged",
    503: "backend or store not ready or failing; retry after Retry-After",
})
ERROR_RESPONSES = _documented({
    404: "unknown backend (the body lists the known ones)",
    409: "request_id reused with different items",
    413: "body or item count over the configured limit",
    422: "invalid input; do not retry unchanged",
    429: "overloaded; retry after Retry-After seconds",
    503: "backend not ready or failing; retry",
    504: "deadline passed; retry with a longer timeout_s",
})
DISCONNECT_POLL_S = 0.25
API_KEY = HTTPBearer(auto_error=False, scheme_name="apiKey", description="an API key (`auth.api_keys`)")
ADMIN_KEY = HTTPBearer(auto_error=False, scheme_name="adminKey", description="an admin key (`auth.admin_keys`)")


def _token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials else None


def error_response(status: int, code: str, message: str, details: dict | None = None, retry_after: float | None = None) -> JSONResponse:
    body = schemas.ErrorResponse(
        error=schemas.ErrorBody(type=code, message=message, retryable=status in RETRYABLE, details=details or {})
    )
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


class BodySizeLimit:
    """Refuse bodies over the limit with 413 before they are read into memory."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        # No trustworthy length: read the body up to the limit, then replay it to the app.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(scope, receive, send)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        response = error_response(
            413, errors.TooLarge.code, f"request body exceeds {self.max_bytes} bytes", {"limit": self.max_bytes}
        )
        await response(scope, receive, send)


async def _until_disconnect(request: Request, work):
    """Run `work`; cancel it if the client goes away, so its items are dropped before inference."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()  # its items are dropped before inference
                raise _ClientGone()
    finally:
        if not task.done():
            task.cancel()


class _ClientGone(Exception):
    """The client disconnected; there is nobody to answer."""


def create_app(
    settings: Settings,
    backends: dict[str, Backend] | None = None,
    load_in_background: bool = True,
    config_path: str | None = None,
) -> FastAPI:
    """Build an app for these settings. Backends load at start-up, in the background
    by default so /healthz answers at once and /readyz turns true when they are loaded.
    `config_path` is re-read by the reload route (None: the embedded defaults)."""
    authenticator = Authenticator(settings.auth)  # raises ValueError for an unreadable key file

    def require_api_key(credentials: HTTPAuthorizationCredentials | None = Depends(API_KEY)) -> None:
        authenticator.check_api(_token(credentials))

    def require_admin_key(credentials: HTTPAuthorizationCredentials | None = Depends(ADMIN_KEY)) -> None:
        authenticator.check_admin(_token(credentials))

    metrics_auth = [] if settings.auth.metrics_public else [Depends(require_api_key)]
    registry = BackendRegistry(settings, backends)
    metrics = Metrics(registry.backends)
    scorer = Scorer(registry, settings.server, metrics)
    for name, backend in registry.backends.items():
        for batcher in backend.batchers():
            batcher.stats.observers.append(metrics.batch_observer(name))
    for queue in registry.queues():
        queue.rating_observers.append(metrics.rating_observer(queue.name))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.ensure_future(registry.load_all())
        if not load_in_background:
            await loading
        yield
        loading.cancel()
        await registry.close_all()

    app = FastAPI(
        title="reward-service",
        description="Rewards for RLHF over HTTP: POST (prompt, response) pairs, get one score each.",
        version=_package_version(),
        lifespan=lifespan,
        responses=COMMON_ERRORS,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.scorer = scorer
    app.state.metrics = metrics
    app.state.authenticator = authenticator
    app.add_middleware(BodySizeLimit, max_bytes=settings.server.max_body_bytes)

    @app.exception_handler(errors.RewardServiceError)
    async def _service_error(request: Request, exc: errors.RewardServiceError):
        response = error_response(STATUS.get(type(exc), 503), exc.code, exc.message, exc.details, exc.retry_after_s)
        if isinstance(exc, errors.Unauthorized):
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(_ClientGone)
    async def _gone(request: Request, exc: _ClientGone):
        return Response(status_code=499)  # nginx's "client closed request"; never sent to anyone

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = [
            {"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:5])
        return error_response(422, errors.InvalidInput.code, f"invalid request: {summary}", {"errors": problems[:50]})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # e.g. a body that is not UTF-8 or JSON nested too deep
            return error_response(422, errors.InvalidInput.code, f"invalid request body: {exc.detail}")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.post("/score", response_model=schemas.ScoreResponse, tags=["scoring"], dependencies=[Depends(require_api_key)],
              responses={
        **ERROR_RESPONSES, 202: {"model": schemas.JobResponse, "description": "human backend with `wait: false`"}})
    async def score(body: schemas.ScoreRequest, request: Request):
        """One reward per item, in order. The response names the exact model version."""
        pairs = [Pair(item.prompt, item.response) for item in body.items]
        result = await _until_disconnect(
            request, scorer.score(pairs, body.backend, body.request_id, body.timeout_s, body.return_members, body.wait)
        )
        job = result.job
        if job is not None and job.status == "pending":
            pending = human_routes.job_response(registry.find(result.backend), job)
            pending.truncated = result.truncated
            return JSONResponse(pending.model_dump(), status_code=202, headers={"Location": pending.poll})
        fields = {k: v for k, v in result.__dict__.items() if k != "job"}
        if job is not None:
            fields.update(job_id=job.job_id, sources=job.sources, ratings=job.ratings, fallback_model=job.fallback_model)
        return schemas.ScoreResponse(**fields)

    @app.post("/admin/backends/{name}/reload", response_model=schemas.ReloadResponse, responses=ERROR_RESPONSES,
              tags=["admin"], dependencies=[Depends(require_admin_key)])
    async def reload_backend(name: str) -> schemas.ReloadResponse:
        """Re-read this backend's model location from the config file and hot-swap the model.
        Requests in flight finish on the old model; a failed load leaves the old one serving."""
        started = time.perf_counter()
        registry.find(name)
        try:
            fresh = config_module.load(config_path)
        except config_module.ConfigError as exc:
            raise errors.ReloadFailed(f"config could not be re-read, nothing changed: {exc}") from None
        previous, current = await registry.reload(name, fresh)
        return schemas.ReloadResponse(
            backend=name, previous_model=previous, model=current,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    @app.post("/get_reward", response_model=schemas.OpenRLHFResponse, responses=ERROR_RESPONSES, tags=["scoring"],
              dependencies=[Depends(require_api_key)])
    async def get_reward(body: schemas.OpenRLHFRequest, request: Request, backend: str | None = None):
        """OpenRLHF remote reward model format (`--remote_rm_url http://host:port/get_reward`).
        Each query is prompt + response in one string. With `prompts` (sent by recent OpenRLHF),
        each query is split into (prompt, response) and scored as a pair; otherwise as the response."""
        prompts = body.prompts if body.prompts and len(body.prompts) == len(body.query) else None
        if prompts and all(q.startswith(p) for p, q in zip(prompts, body.query)):
            pairs = [Pair(p, q[len(p):]) for p, q in zip(prompts, body.query)]
        else:
            pairs = [Pair("", text) for text in body.query]
        result = await _until_disconnect(request, scorer.score(pairs, backend))
        return schemas.OpenRLHFResponse(rewards=result.scores, backend=result.backend, model=result.model,
                                        truncated=result.truncated)

    app.include_router(human_routes.router(registry, require_api_key, require_admin_key))

    @app.get("/v1/backends", response_model=schemas.BackendList, tags=["service"],
             dependencies=[Depends(require_api_key)])
    async def list_backends() -> schemas.BackendList:
        return schemas.BackendList(
            default_backend=registry.default,
            backends=[
                schemas.BackendInfo(
                    name=name,
                    type=backend.type,
                    model=backend.model_version if backend.ready else None,
                    ready=backend.ready,
                    default=name == registry.default,
                    error=backend.error,
                    details=backend.details() if backend.ready else {},
                )
                for name, backend in registry.backends.items()
            ],
        )

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict:
        """Alive: the process answers. Says nothing about models."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], responses={503: {"description": "some backend is not loaded"}})
    async def readyz():
        """Ready: every configured backend has loaded its model."""
        states = {
            name: {"ready": b.ready, "error": b.error} for name, b in registry.backends.items()
        }
        ready = registry.all_ready
        return JSONResponse({"ready": ready, "backends": states}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["service"], response_class=Response, dependencies=metrics_auth)
    async def prometheus_metrics() -> Response:
        metrics.model_info.clear()  # only the versions served now
        for name, backend in registry.backends.items():
            metrics.ready.labels(name).set(1 if backend.ready else 0)
            metrics.queue_depth.labels(name).set(sum(b.queued_items for b in backend.batchers()))
            if backend.ready:
                metrics.model_info.labels(name, backend.model_version).set(1)
        for queue in registry.queues():
            if queue.ready:
                try:
                    stats = await queue.run(queue.store.queue_stats, queue.name)
                except errors.BackendFailed:
                    continue  # the store is down: keep the last values; reward_backend_ready still says 1
                metrics.tasks_pending.labels(queue.name).set(stats["pending"])
                metrics.oldest_pending.labels(queue.name).set(stats["oldest_pending_age_s"])
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reward-service")
    except PackageNotFoundError:
        return "0.0.0+local"
