"""`RewardClient` and `AsyncRewardClient`: call reward-service from any trainer.

- pooled connections (one httpx client per RewardClient);
- a `request_id` per call, the same on every retry, so the service scores once;
- retries with exponential backoff and full jitter on connection errors and
  timeouts, 429 (honouring `Retry-After`), 502, 503 and 504; never on other 4xx;
- checks one score per item, and watches the model version: a change mid-run
  warns, or raises with `on_model_change="error"`;
- sends `api_key` (default: $REWARD_SERVICE_API_KEY) as a bearer token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid
import warnings
from dataclasses import dataclass, field

import httpx

log = logging.getLogger(__name__)

API_KEY_ENV = "REWARD_SERVICE_API_KEY"
RETRY_STATUSES = {429, 502, 503, 504}
TIMEOUT_MARGIN_S = 15.0  # the HTTP read waits this much past the server-side deadline, to get its 504


class RewardServiceError(Exception):
    """The service refused the request (or kept failing); `status` and `type` say how."""

    def __init__(self, message: str, status: int | None = None, type: str | None = None, body: dict | None = None):
        super().__init__(message)
        self.status = status
        self.type = type
        self.body = body or {}


class ModelChanged(RewardServiceError, RuntimeError):
    """The reward model version changed during the run."""


class ModelChangedWarning(UserWarning):
    pass


@dataclass
class ScoreResult:
    scores: list[float]
    backend: str
    model: str
    request_id: str | None
    elapsed_ms: float
    attempts: int = 1
    members: dict | None = None
    truncated: list[bool] | None = None  # items the service cut to its max_chars_per_item
    sources: list[str] | None = None  # human backend: "human" or "fallback" per item
    waited_s: float = 0.0  # time spent backing off between attempts (Retry-After or jitter)


@dataclass
class RetryPolicy:
    max_retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Retry-After when the server gives one, else full-jitter exponential backoff."""
        if retry_after:
            try:
                return min(float(retry_after), self.backoff_max_s)
            except ValueError:
                pass
        return self.rng.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** attempt))


def auth_headers(api_key: str | None = None) -> dict:
    """`Authorization: Bearer <key>` for the key given, else $REWARD_SERVICE_API_KEY; {} with neither."""
    api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class _Common:
    def __init__(self, base_url: str, backend: str | None, timeout_s: float, retry: RetryPolicy | None,
                 on_model_change: str, run_id: str | None, headers: dict | None, api_key: str | None):
        if on_model_change not in ("warn", "error", "ignore"):
            raise ValueError("on_model_change must be 'warn', 'error' or 'ignore'")
        self.base_url = base_url.rstrip("/")
        self.backend = backend
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.on_model_change = on_model_change
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.headers = {**auth_headers(api_key), **(headers or {})}
        self.model_version: str | None = None
        self._calls = 0

    def _request(self, prompts, responses, request_id, timeout_s, references) -> tuple[dict, str]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if references is not None and len(references) != len(responses):
            raise ValueError(f"{len(references)} references for {len(responses)} responses")
        self._calls += 1
        request_id = request_id or f"{self.run_id}-{self._calls}"
        items = [{"prompt": p, "response": r} for p, r in zip(prompts, responses)]
        for item, reference in zip(items, references or []):
            if reference is not None:
                item["reference"] = reference
        body = {"items": items, "request_id": request_id}
        if self.backend:
            body["backend"] = self.backend
        if timeout_s:
            body["timeout_s"] = timeout_s
        return body, request_id

    def _result(self, response: httpx.Response, expected: int, attempts: int) -> ScoreResult:
        data = response.json()
        scores = data.get("scores")
        if not isinstance(scores, list) or len(scores) != expected:
            raise RewardServiceError(
                f"the service returned {len(scores) if isinstance(scores, list) else 'no'} scores for {expected} items",
                response.status_code, "bad_response", data,
            )
        self._watch_version(data.get("model", ""))
        if any(data.get("truncated") or []):
            log.warning("the service truncated %d of %d items to its character limit (see result.truncated)",
                        sum(data["truncated"]), expected)
        return ScoreResult(scores=[float(s) for s in scores], backend=data.get("backend", ""), model=data.get("model", ""),
                           request_id=data.get("request_id"), elapsed_ms=data.get("elapsed_ms", 0.0),
                           attempts=attempts, members=data.get("members"), truncated=data.get("truncated"),
                           sources=data.get("sources"))

    def _watch_version(self, version: str) -> None:
        if self.model_version is not None and version != self.model_version and self.on_model_change != "ignore":
            message = f"reward model changed mid-run: {self.model_version} -> {version}"
            if self.on_model_change == "error":
                raise ModelChanged(message, type="model_changed")
            warnings.warn(message, ModelChangedWarning, stacklevel=4)
        self.model_version = version

    def _http_timeout(self, timeout_s: float | None) -> float:
        return timeout_s + TIMEOUT_MARGIN_S if timeout_s else self.timeout_s

    def _judge(self, outcome, expected: int, attempt: int, request_id: str) -> tuple[ScoreResult | None, float]:
        """One attempt's outcome (a response or a transport error): the result, or how long
        to wait before retrying; raises when retrying cannot help or the retries are spent."""
        retry_after = None
        if isinstance(outcome, httpx.Response):
            if outcome.status_code == 200:
                return self._result(outcome, expected, attempt + 1), 0.0
            error = self._error(outcome)
            if outcome.status_code not in RETRY_STATUSES:
                raise error
            retry_after = outcome.headers.get("retry-after")
        else:
            error = RewardServiceError(f"{type(outcome).__name__}: {outcome}", type="connection_error")
        if attempt >= self.retry.max_retries:
            raise RewardServiceError(f"gave up after {attempt + 1} attempts: {error}", error.status, error.type, error.body)
        wait = self.retry.delay(attempt, retry_after)
        log.warning("reward call %s failed (%s); retry %d in %.2fs", request_id, error, attempt + 1, wait)
        return None, wait

    @staticmethod
    def _error(response: httpx.Response) -> RewardServiceError:
        try:
            body = response.json()
            error = body.get("error", {})
            return RewardServiceError(f"{response.status_code} {error.get('type')}: {error.get('message')}",
                                      response.status_code, error.get("type"), body)
        except ValueError:
            return RewardServiceError(f"{response.status_code}: {response.text[:200]}", response.status_code)


class RewardClient(_Common):
    """Synchronous client. Use as a context manager, or call `close()`."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", backend: str | None = None, timeout_s: float = 120.0,
                 retry: RetryPolicy | None = None, on_model_change: str = "warn", run_id: str | None = None,
                 headers: dict | None = None, transport: httpx.BaseTransport | None = None,
                 api_key: str | None = None):
        super().__init__(base_url, backend, timeout_s, retry, on_model_change, run_id, headers, api_key)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=self.headers, transport=transport)

    def score(self, prompts: list[str | list[dict]], responses: list[str], request_id: str | None = None,
              timeout_s: float | None = None, references: list[str | None] | None = None) -> ScoreResult:
        body, request_id = self._request(prompts, responses, request_id, timeout_s, references)
        waited = 0.0
        for attempt in range(self.retry.max_retries + 1):
            try:
                outcome = self._http.post("/score", json=body, timeout=self._http_timeout(timeout_s))
            except httpx.TransportError as exc:
                outcome = exc
            result, wait = self._judge(outcome, len(prompts), attempt, request_id)
            if result is not None:
                result.waited_s = waited
                return result
            time.sleep(wait)
            waited += wait

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RewardClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncRewardClient(_Common):
    """The same client for asyncio trainers."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", backend: str | None = None, timeout_s: float = 120.0,
                 retry: RetryPolicy | None = None, on_model_change: str = "warn", run_id: str | None = None,
                 headers: dict | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 api_key: str | None = None):
        super().__init__(base_url, backend, timeout_s, retry, on_model_change, run_id, headers, api_key)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, headers=self.headers,
                                       transport=transport)

    async def score(self, prompts: list[str | list[dict]], responses: list[str], request_id: str | None = None,
                    timeout_s: float | None = None, references: list[str | None] | None = None) -> ScoreResult:
        body, request_id = self._request(prompts, responses, request_id, timeout_s, references)
        waited = 0.0
        for attempt in range(self.retry.max_retries + 1):
            try:
                outcome = await self._http.post("/score", json=body, timeout=self._http_timeout(timeout_s))
            except httpx.TransportError as exc:
                outcome = exc
            result, wait = self._judge(outcome, len(prompts), attempt, request_id)
            if result is not None:
                result.waited_s = waited
                return result
            await asyncio.sleep(wait)
            waited += wait

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncRewardClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
