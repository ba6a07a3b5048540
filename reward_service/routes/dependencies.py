"""What a route may ask for, as FastAPI dependencies: the app's parts, and who is calling.

The parts live on `app.state` (set once by the app factory), so tests can build
as many apps as they like. Keys are bearer tokens: API keys for scoring, admin
keys for reload and export, rater tokens (per human backend) for the task API.
Every check goes through `authenticated`, which counts failures per client address
(`reward_service.throttle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from reward_service import errors
from reward_service.config import Settings
from reward_service.human.queue import HumanQueue
from reward_service.metrics import Metrics
from reward_service.registry import BackendRegistry
from reward_service.scoring import Scorer

API_KEY = HTTPBearer(auto_error=False, scheme_name="apiKey", description="an API key (`auth.api_keys`)")
ADMIN_KEY = HTTPBearer(auto_error=False, scheme_name="adminKey", description="an admin key (`auth.admin_keys`)")
RATER_TOKEN = HTTPBearer(auto_error=False, scheme_name="raterToken",
                         description="a rater token from the human backend's `raters` config")
Credentials = HTTPAuthorizationCredentials | None
T = TypeVar("T")


def _token(credentials: Credentials) -> str | None:
    return credentials.credentials if credentials else None


async def settings(request: Request) -> Settings:
    return request.app.state.settings


async def registry(request: Request) -> BackendRegistry:
    return request.app.state.registry


async def scorer(request: Request) -> Scorer:
    return request.app.state.scorer


async def metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def client_address(request: Request) -> str:
    """Who failed authentication, for the throttle: the connection's peer, or, when the peer is
    listed in `server.trusted_proxies`, the address uvicorn took from X-Forwarded-For (by default
    no peer is: a forwarded header would let a guesser name a new address on every guess)."""
    return request.client.host if request.client else "unknown"


def authenticated(request: Request, check: Callable[[], T]) -> T:
    """`check()` (which raises Unauthorized for a missing or wrong key or token), refused
    outright while this client address is blocked for failing too often; a failure counts."""
    throttle = request.app.state.auth_throttle
    address = client_address(request)
    throttle.check(address)
    try:
        return check()
    except errors.Unauthorized:
        throttle.failed(address)
        raise


async def require_api_key(request: Request, credentials: Credentials = Depends(API_KEY)) -> None:
    authenticated(request, lambda: request.app.state.authenticator.check_api(_token(credentials)))


async def require_admin_key(request: Request, credentials: Credentials = Depends(ADMIN_KEY)) -> None:
    authenticated(request, lambda: request.app.state.authenticator.check_admin(_token(credentials)))


async def check_api_key_now(request: Request) -> None:
    """An API key, read in the route rather than declared as a security scheme: for routes
    that take no key by default (/metrics, /readyz) but ask for one for more."""
    token = _token(await API_KEY(request))
    authenticated(request, lambda: request.app.state.authenticator.check_api(token))


async def require_metrics_access(request: Request) -> None:
    """/metrics is public unless `auth.metrics_public: false`; then it needs an API key."""
    if not request.app.state.settings.auth.metrics_public:
        await check_api_key_now(request)


@dataclass(frozen=True)
class Rater:
    name: str
    queue: HumanQueue


async def rater(
    request: Request,
    backend: str | None = Query(None, description="human backend name; default: the first one configured"),
    credentials: Credentials = Depends(RATER_TOKEN),
) -> Rater:
    """The rater this token belongs to, in the named (or first) human queue."""
    return authenticated(request, lambda: _rater(request.app.state.registry, backend, _token(credentials)))


def _rater(registry: BackendRegistry, backend: str | None, token: str | None) -> Rater:
    """Nothing about the queues is said before the token is accepted: not which backends
    exist, nor why a queue is not ready (that may name its database's user and host)."""
    queues = {queue.name: queue for queue in registry.queues()}
    chosen = queues.get(backend) if backend is not None else next(iter(queues.values()), None)
    name = chosen.queue.rater_for(token) if chosen is not None else None
    if name is None:
        opens = [queue_name for queue_name, queue in queues.items() if queue.queue.rater_for(token)]
        if opens:  # a rater of another queue: a wrong or missing ?backend=
            raise errors.UnknownBackend(f"this token opens the labeling queue of {', '.join(opens)}, "
                                        f"not {errors.shown(backend) if backend else 'the default one'}: "
                                        f"use /label?backend={opens[0]}")
        hint = "" if chosen is None or chosen.queue.settings.raters else " (no raters are configured for this queue)"
        raise errors.Unauthorized(f"that rater token was not accepted{hint}; send it as "
                                  "`Authorization: Bearer <token>`")
    if not chosen.ready:
        raise errors.NotReady("this labeling queue is not available yet (its store is starting or unreachable); "
                              "try again shortly", retry_after_s=5)
    return Rater(name, chosen.queue)


SettingsDep = Annotated[Settings, Depends(settings)]
RegistryDep = Annotated[BackendRegistry, Depends(registry)]
ScorerDep = Annotated[Scorer, Depends(scorer)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
RaterDep = Annotated[Rater, Depends(rater)]
APIKey = Depends(require_api_key)
AdminKey = Depends(require_admin_key)
