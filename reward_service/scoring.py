"""Scoring a request: pick the backend, enforce the deadline, dedupe retries, record metrics.

This is what the routes call; it speaks pairs and floats, not HTTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from dataclasses import dataclass

from reward_service.backends import Backend, QueuedBackend
from reward_service.config import ServerSettings
from reward_service.errors import (
    BackendFailed,
    DeadlineExceeded,
    InvalidInput,
    Overloaded,
    RewardServiceError,
    TooLarge,
)
from reward_service.human.jobs import JobOutcome
from reward_service.idempotency import IdempotencyCache
from reward_service.items import Item, ScoreOptions, Scored, fingerprint
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
    truncated: list[bool] | None = None  # items cut (to max_chars_per_item, or to the model's length)
    job: JobOutcome | None = None  # human queue only (pending for an async job)
    objectives: dict[str, list[float]] | None = None
    notes: list[str] | None = None
    verdicts: dict[str, list[str]] | None = None  # verifiable rewards: backend -> each item's outcome


class Scorer:
    def __init__(self, registry: BackendRegistry, server: ServerSettings, metrics: Metrics):
        self.registry = registry
        self.server = server
        self.metrics = metrics
        self.idempotency = IdempotencyCache(server.idempotency_cache_size)
        self.in_flight = 0

    async def score(
        self,
        items: list[Item],
        backend_name: str | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
        return_members: bool | None = None,
        wait: bool = True,
        options: ScoreOptions = ScoreOptions(),
    ) -> ScoreResult:
        """`wait=False` matters only for queued (human) backends: the job is created and
        returned pending at once; other backends answer straight away anyway. `options`
        go to the backend (length policy, objectives)."""
        started = time.perf_counter()
        items, truncated = self._fit(items)
        if len(items) > self.server.max_items_per_request:
            raise TooLarge(
                f"{len(items)} items in one request; the limit is {self.server.max_items_per_request} "
                "(split the batch)",
                details={"limit": self.server.max_items_per_request},
            )
        backend = self.registry.get(backend_name)
        timeout = min(timeout_s or backend.default_timeout_s or self.server.default_timeout_s,
                      self.server.max_timeout_s)
        deadline = asyncio.get_running_loop().time() + timeout
        if return_members is None:
            return_members = backend.returns_members
        if self.in_flight >= self.server.max_concurrent_requests:
            self.metrics.requests.labels(backend.name, Overloaded.code).inc()
            raise Overloaded(
                f"{self.in_flight} scoring requests in flight; the limit is {self.server.max_concurrent_requests}",
                retry_after_s=1,
            )
        self.in_flight += 1
        status = "ok"
        try:
            if isinstance(backend, QueuedBackend):  # dedupe lives in the queue's store, not in memory
                result = await self._score_queued(backend, items, request_id, timeout, deadline, wait, started)
                status = "accepted" if result.job.pending else status
                return dataclasses.replace(result, truncated=truncated)
            scored = await self.idempotency.once(
                backend.name,
                request_id,
                fingerprint([[item.key() for item in items], [options.truncation, options.objectives]])
                if request_id else "",
                lambda: self._score(backend, items, deadline, timeout, options),
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
            self.metrics.items.labels(backend.name, status).inc(len(items))
            self.metrics.latency.labels(backend.name).observe(time.perf_counter() - started)
        return ScoreResult(
            backend=backend.name,
            model=scored.model,
            scores=scored.scores,
            request_id=request_id,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            members=scored.members if return_members else None,
            truncated=_either(truncated, scored.truncated),
            objectives=scored.objectives,
            notes=scored.notes,
            verdicts={name: [v.outcome for v in items] for name, items in scored.verdicts.items()}
            if scored.verdicts else None,
        )

    def _fit(self, items: list[Item]) -> tuple[list[Item], list[bool] | None]:
        """Enforce max_chars_per_item: reject (422), or cut to fit (`truncated` then flags each
        item; None when nothing was cut). Cutting works as `truncation: left` does for tokens:
        the start goes first (of the prompt, then of the response), the end of the response,
        which decides the reward, stays; the response keeps at least half the limit."""
        limit = self.server.max_chars_per_item
        flags = [len(item.prompt) + len(item.response) > limit for item in items]
        too_long = [i for i, flag in enumerate(flags) if flag]
        if not too_long:
            return items, None
        if self.server.long_items == "reject":
            raise InvalidInput(
                f"item {too_long[0]} has {len(items[too_long[0]].prompt) + len(items[too_long[0]].response)} "
                f"characters (prompt + response); the limit is {limit}",
                details={"limit": limit, "items": too_long[:100]},
            )
        fitted = list(items)
        for i in too_long:
            prompt, response = items[i].prompt, items[i].response
            response = response[len(response) - min(len(response), max(limit - len(prompt), limit - limit // 2)):]
            keep = limit - len(response)
            cut_prompt = prompt[len(prompt) - keep:] if keep else ""
            context = items[i].context if cut_prompt == prompt else None  # a cut conversation is read as text
            fitted[i] = dataclasses.replace(items[i], prompt=cut_prompt, response=response, context=context)
        return fitted, flags

    async def _score_queued(self, backend: QueuedBackend, items: list[Item], request_id, timeout, deadline, wait,
                            started) -> ScoreResult:
        job = await backend.submit(items, request_id, timeout)
        if wait:
            outcome = await backend.wait(job, deadline)
        else:
            outcome = await backend.outcome(job.id)
        if not outcome.pending:
            self.metrics.record_rewards(backend.name, [s for s in outcome.scores if s is not None])
        return ScoreResult(
            backend=backend.name,
            model=backend.model_version,
            scores=outcome.scores,
            request_id=request_id,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            job=outcome,
        )

    async def _score(self, backend: Backend, items: list[Item], deadline: float, timeout: float,
                     options: ScoreOptions) -> Scored:
        try:  # the version comes back with the scores: the one that produced them, even across a reload
            scored = await asyncio.wait_for(backend.score(items, deadline, options), timeout)
        except (asyncio.TimeoutError, DeadlineExceeded):
            raise DeadlineExceeded(
                f"backend {backend.name!r} did not finish within {timeout:g}s", retry_after_s=1
            ) from None
        except RewardServiceError:
            raise
        except Exception as exc:
            raise BackendFailed(f"backend {backend.name!r} failed: {type(exc).__name__}: {exc}", retry_after_s=1) from exc
        parts = [*(scored.members or {}).values(), *(scored.objectives or {}).values()]
        if len(scored.scores) != len(items) or not all(math.isfinite(s) for s in [*scored.scores, *sum(parts, [])]):
            raise BackendFailed(f"backend {backend.name!r} returned {len(scored.scores)} scores for {len(items)} "
                                "items or a non-finite score (or member or objective score)")
        self.metrics.record_rewards(backend.name, scored.scores)
        if scored.verdicts:
            self.metrics.record_verdicts(scored.verdicts)
        return scored


def _either(first: list[bool] | None, second: list[bool] | None) -> list[bool] | None:
    """Per item: cut by either step (None when neither cut anything)."""
    if first is None or second is None:
        return first or second
    return [a or b for a, b in zip(first, second)]
