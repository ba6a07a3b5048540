"""Scoring a request: pick the backend, enforce the deadline, dedupe retries, record metrics.

This is what the routes call; it speaks pairs and floats, not HTTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from dataclasses import dataclass

from reward_service.backends import Pair
from reward_service.config import ServerSettings
from reward_service.errors import (
    BackendFailed,
    DeadlineExceeded,
    InvalidInput,
    Overloaded,
    RewardServiceError,
    TooLarge,
)
from reward_service.idempotency import IdempotencyCache, fingerprint
from reward_service.metrics import Metrics
from reward_service.registry import BackendRegistry


@dataclass(frozen=True)
class ScoreResult:
    backend: str
    model: str
    scores: list[float]
    request_id: str | None
    elapsed_ms: float
    members: dict[str, list[float]] | None = None
    truncated: list[bool] | None = None  # items cut to max_chars_per_item (long_items: truncate)
    job: object | None = None  # human queue only: its JobOutcome (pending for an async job)


class Scorer:
    def __init__(self, registry: BackendRegistry, server: ServerSettings, metrics: Metrics):
        self.registry = registry
        self.server = server
        self.metrics = metrics
        self.idempotency = IdempotencyCache(server.idempotency_cache_size)
        self.in_flight = 0

    async def score(
        self,
        pairs: list[Pair],
        backend_name: str | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
        return_members: bool | None = None,
        wait: bool = True,
    ) -> ScoreResult:
        """`wait=False` matters only for queued (human) backends: the job is created and
        returned pending at once; other backends answer straight away anyway."""
        started = time.perf_counter()
        pairs, truncated = self._fit(pairs)
        if len(pairs) > self.server.max_items_per_request:
            raise TooLarge(
                f"{len(pairs)} items in one request; the limit is {self.server.max_items_per_request} "
                "(split the batch)",
                details={"limit": self.server.max_items_per_request},
            )
        backend = self.registry.get(backend_name)
        own_default = getattr(getattr(backend, "settings", None), "default_timeout_s", None)
        timeout = min(timeout_s or own_default or self.server.default_timeout_s, self.server.max_timeout_s)
        deadline = asyncio.get_running_loop().time() + timeout
        if return_members is None:
            return_members = getattr(getattr(backend, "settings", None), "return_members", False)
        if self.in_flight >= self.server.max_concurrent_requests:
            self.metrics.requests.labels(backend.name, Overloaded.code).inc()
            raise Overloaded(
                f"{self.in_flight} scoring requests in flight; the limit is {self.server.max_concurrent_requests}",
                retry_after_s=1,
            )
        self.in_flight += 1
        status = "ok"
        try:
            if getattr(backend, "queued", False):  # dedupe lives in the queue's store, not in memory
                result = await self._score_queued(backend, pairs, request_id, timeout, deadline, wait, started)
                status = "accepted" if result.job.status == "pending" else status
                return dataclasses.replace(result, truncated=truncated)
            scores, version, members = await self.idempotency.run(
                backend.name,
                request_id,
                fingerprint([list(p) for p in pairs]) if request_id else "",
                lambda: self._score(backend, pairs, deadline, timeout, return_members),
            )
        except RewardServiceError as exc:
            status = exc.code
            raise
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            self.in_flight -= 1
            self.metrics.requests.labels(backend.name, status).inc()
            self.metrics.items.labels(backend.name, status).inc(len(pairs))
            self.metrics.latency.labels(backend.name).observe(time.perf_counter() - started)
        return ScoreResult(
            backend=backend.name,
            model=version,
            scores=scores,
            request_id=request_id,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            members=members,
            truncated=truncated,
        )

    def _fit(self, pairs: list[Pair]) -> tuple[list[Pair], list[bool] | None]:
        """Enforce max_chars_per_item: reject (422), or cut to fit (`truncated` then flags each
        item; None when nothing was cut). Cutting keeps the start of the response (at least half
        the limit) and the end of the prompt, the part nearest the response."""
        limit = self.server.max_chars_per_item
        flags = [len(p.prompt) + len(p.response) > limit for p in pairs]
        too_long = [i for i, flag in enumerate(flags) if flag]
        if not too_long:
            return pairs, None
        if self.server.long_items == "reject":
            raise InvalidInput(
                f"item {too_long[0]} has {len(pairs[too_long[0]].prompt) + len(pairs[too_long[0]].response)} "
                f"characters (prompt + response); the limit is {limit}",
                details={"limit": limit, "items": too_long[:100]},
            )
        fitted = list(pairs)
        for i in too_long:
            prompt, response = pairs[i]
            response = response[: max(limit - len(prompt), limit - limit // 2)]
            keep = limit - len(response)
            fitted[i] = Pair(prompt[len(prompt) - keep:] if keep else "", response)
        return fitted, flags

    async def _score_queued(self, backend, pairs, request_id, timeout, deadline, wait, started) -> ScoreResult:
        job = await backend.submit(pairs, request_id, timeout)
        if wait:
            outcome = await backend.wait(job, deadline)
        else:
            outcome = await backend.outcome(job.id)
        if outcome.status == "done":
            self.metrics.record_rewards(backend.name, [s for s in outcome.scores if s is not None])
        return ScoreResult(
            backend=backend.name,
            model=backend.model_version,
            scores=outcome.scores,
            request_id=request_id,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            job=outcome,
        )

    async def _score(self, backend, pairs: list[Pair], deadline: float, timeout: float, return_members: bool):
        members = None
        try:  # the version comes back with the scores: the one that produced them, even across a reload
            if return_members and hasattr(backend, "score_members"):
                scores, members, version = await asyncio.wait_for(backend.score_members(pairs, deadline), timeout)
            else:
                scores, version = await asyncio.wait_for(backend.score_versioned(pairs, deadline), timeout)
        except (asyncio.TimeoutError, DeadlineExceeded):
            raise DeadlineExceeded(
                f"backend {backend.name!r} did not finish within {timeout:g}s", retry_after_s=1
            ) from None
        except RewardServiceError:
            raise
        except Exception as exc:
            raise BackendFailed(f"backend {backend.name!r} failed: {type(exc).__name__}: {exc}", retry_after_s=1) from exc
        if len(scores) != len(pairs) or not all(math.isfinite(s) for s in scores):
            raise BackendFailed(f"backend {backend.name!r} returned {len(scores)} scores for {len(pairs)} items or a non-finite score")
        self.metrics.record_rewards(backend.name, scores)
        return scores, version, members
