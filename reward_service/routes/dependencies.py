"""What a route may ask for, as FastAPI dependencies: the app's parts, and who is calling.

The parts live on `app.state` (set once by the app factory), so tests can build
as many apps as they like. Keys are bearer tokens: API keys for scoring, admin
keys for reload and export, rater tokens (per human backend) for the task API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

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


def _token(credentials: Credentials) -> str | None:
    return credentials.credentials if credentials else None


def settings(request: Request) -> Settings:
    return request.app.state.settings


def registry(request: Request) -> BackendRegistry:
    return request.app.state.registry


def scorer(request: Request) -> Scorer:
    return request.app.state.scorer


def metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def require_api_key(request: Request, credentials: Credentials = Depends(API_KEY)) -> None:
    request.app.state.authenticator.check_api(_token(credentials))


def require_admin_key(request: Request, credentials: Credentials = Depends(ADMIN_KEY)) -> None:
    request.app.state.authenticator.check_admin(_token(credentials))


async def require_metrics_access(request: Request) -> None:
    """/metrics is public unless `auth.metrics_public: false`; then it needs an API key. (Read
    here, not declared as a security scheme: by default the route takes no key at all.)"""
    if not request.app.state.settings.auth.metrics_public:
        request.app.state.authenticator.check_api(_token(await API_KEY(request)))


@dataclass(frozen=True)
class Rater:
    name: str
    queue: HumanQueue


def rater(
    request: Request,
    backend: str | None = Query(None, description="human backend name; default: the first one configured"),
    credentials: Credentials = Depends(RATER_TOKEN),
) -> Rater:
    """The rater this token belongs to, in the named (or first) human queue."""
    queue = request.app.state.registry.queue(backend).queue
    name = queue.rater_for(_token(credentials))
    if name is None:
        hint = "" if queue.settings.raters else " (no raters are configured: add `raters:` to the human backend)"
        raise errors.Unauthorized(f"a valid rater token is required as `Authorization: Bearer <token>`{hint}")
    return Rater(name, queue)


SettingsDep = Annotated[Settings, Depends(settings)]
RegistryDep = Annotated[BackendRegistry, Depends(registry)]
ScorerDep = Annotated[Scorer, Depends(scorer)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
RaterDep = Annotated[Rater, Depends(rater)]
APIKey = Depends(require_api_key)
AdminKey = Depends(require_admin_key)
