"""`human`: items become rating tasks in a persistent queue; people rate them on /label.

A request either waits until every item is rated or its deadline passes
(blocking), or gets a job id at once and polls it (async). At the deadline,
items still unrated are scored by the fallback backend and marked so; with no
fallback the job keeps waiting in the store and the waiting request gets a 504
(a retry with the same request_id resumes waiting on the same tasks).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from reward_service.auth import find_token
from reward_service.backends.base import Backend, Pair
from reward_service.config import HumanBackendSettings
from reward_service.errors import BackendFailed, Conflict, DeadlineExceeded, RewardServiceError
from reward_service.human import scores as scoring
from reward_service.human.store import Job, Store, StoreError
from reward_service.idempotency import fingerprint

log = logging.getLogger(__name__)

FALLBACK_RESERVE_S = 1.0  # a blocking wait ends this much before the deadline when a fallback must still score
SWEEP_INTERVAL_S = 1.0  # how often jobs past their deadline are finished with the fallback
STORE_THREADS = 4  # the queue's own threads for store calls
REOPEN_INTERVAL_S = 2.0  # how often a store that could not be opened at start is tried again


def store_url(settings: HumanBackendSettings) -> str:
    """`sqlite` means the default file in the cache root (REWARD_SERVICE_HOME)."""
    from reward_service import model_store

    if settings.store == "sqlite":
        return f"sqlite:///{model_store.home() / 'human-queue.sqlite3'}"
    return settings.store


@dataclass(frozen=True)
class JobOutcome:
    """What a trainer sees of a job: rewards (None while unrated), where each came from."""

    job_id: str
    status: str  # pending | done
    scores: list[float | None]
    sources: list[str | None]  # "human", "fallback", or None while unrated
    ratings: list[int]
    fallback_model: str | None
    created_at: float
    deadline_at: float | None
    request_id: str | None = None

    @property
    def rated(self) -> int:
        return sum(s == "human" for s in self.sources)


class HumanBackend(Backend):
    type = "human"
    queued = True  # the scorer talks to it in jobs, not single calls

    def __init__(self, name: str, settings: HumanBackendSettings, fallback: Backend | None = None):
        super().__init__(name)
        self.settings = settings
        self.fallback = fallback
        self.store: Store | None = None
        self._sweeper: asyncio.Future | None = None
        self._reopening: asyncio.Future | None = None
        self._executor = ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix=f"human-{name}")
        self._changed = asyncio.Event()
        self.rating_observers: list = []  # called with (rater, seconds) after each stored rating

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def model_version(self) -> str:
        """Changes when what raters are asked changes (guidelines, scale, overlap)."""
        asked = json.dumps(
            [self.settings.guidelines, self.settings.scale.model_dump(), self.settings.overlap,
             self.settings.rank_groups, self.settings.max_rank_size], sort_keys=True)
        return f"human@{hashlib.sha256(asked.encode()).hexdigest()[:8]}"

    async def load(self) -> None:
        """Open the store and create the schema. If the database is not up yet (a service
        started before its PostgreSQL), the error shows in /readyz and opening is retried in
        the background until it works; then the backend turns ready by itself."""
        try:
            await self._open()
        except Exception:
            self._reopening = asyncio.ensure_future(self._open_when_reachable())
            raise

    async def _open(self) -> None:
        store = await asyncio.to_thread(Store.open, store_url(self.settings))
        try:
            await asyncio.to_thread(store.create_schema)
        except BaseException:
            await asyncio.to_thread(store.close)
            raise
        self.store = store
        if self.fallback is not None:
            self._sweeper = asyncio.ensure_future(self._sweep_overdue_jobs())
        self.ready = True

    async def _open_when_reachable(self) -> None:
        while True:
            await asyncio.sleep(REOPEN_INTERVAL_S)
            try:
                await self._open()
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc} (retrying every {REOPEN_INTERVAL_S:g}s)"
                continue
            self.error = None
            log.info("human backend %r: store reachable, ready", self.name)
            return

    async def close(self) -> None:
        for task in (self._sweeper, self._reopening):
            if task is not None:
                task.cancel()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        self._executor.shutdown(wait=False)

    async def _sweep_overdue_jobs(self) -> None:
        """Finish jobs past their deadline with the fallback even when nobody waits or polls
        (an async job never polled, a client that went away, jobs left from before a restart),
        so their unrated tasks leave the raters' queue on time."""
        while True:
            try:
                for job in await self.run(self.store.overdue_jobs, self.name):
                    await self._finish_with_fallback(job)
            except Exception as exc:  # the store or the fallback is down: try again next round
                log.warning("human backend %r: overdue-job sweep failed: %s", self.name, exc)
            await asyncio.sleep(SWEEP_INTERVAL_S)

    def details(self) -> dict:
        s = self.settings
        return {"store": "postgresql" if s.store.startswith("postgres") else "sqlite", "overlap": s.overlap,
                "fallback": s.fallback, "scale": s.scale.model_dump(), "raters": len(s.raters)}

    # -- raters ----------------------------------------------------------------------------------

    def rater_for(self, token: str | None) -> str | None:
        """The rater name this token belongs to (constant-time comparison), or None."""
        return find_token(token, self.settings.raters)

    def rating_stored(self, rater: str, seconds: float | None) -> None:
        """Wake the requests waiting in this process (others notice on their next poll)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for observe in self.rating_observers:
            observe(rater, seconds)

    async def run(self, method, *args):
        """A store call in this queue's own threads (a stuck database cannot starve the
        threads other backends use); a database failure is a retryable 503."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(method, *args))
        except StoreError as exc:
            raise BackendFailed(f"human queue store unavailable: {exc}", retry_after_s=2) from exc

    # -- jobs --------------------------------------------------------------------------------------

    async def submit(self, pairs: list[Pair], request_id: str | None, timeout_s: float) -> Job:
        """The job for these items: a new one, or the one this request_id made before."""
        items_fingerprint = fingerprint([list(p) for p in pairs])
        tasks = scoring.make_tasks(pairs, self.settings.rank_groups, self.settings.max_rank_size)
        job, created = await self.run(
            self.store.create_job, self.name, request_id, items_fingerprint, len(pairs), tasks,
            self.settings.overlap, time.time() + timeout_s,
        )
        if not created and job.fingerprint != items_fingerprint:
            raise Conflict(f"request_id {request_id!r} was already used with different items; use a new request_id")
        if created:
            log.info("human job %s: %d items, %d tasks", job.id, len(pairs), len(tasks))
        return job

    async def outcome(self, job_id: str) -> JobOutcome | None:
        """The job as it stands. An async job past its deadline is finished here (with the fallback)."""
        job = await self.run(self.store.job, job_id)
        if job is None or job.backend != self.name:
            return None
        if job.status == "pending" and job.deadline_at is not None and time.time() >= job.deadline_at \
                and self.fallback is not None:
            return await self._finish_with_fallback(job)
        return await self._outcome(job)

    async def wait(self, job: Job, deadline: float) -> JobOutcome:
        """Wait (event-loop `deadline`) until every item is rated; then, or at the deadline with
        a fallback, finish the job. Without a fallback the deadline raises DeadlineExceeded."""
        loop = asyncio.get_running_loop()
        if self.fallback is not None and job.deadline_at is not None:
            # With a fallback the job's own deadline (set by the request that made it) rules:
            # a retry does not extend it. Without one, a retry keeps waiting on the same tasks.
            deadline = min(deadline, loop.time() + (job.deadline_at - time.time()))
        reserve = max(0.0, min(FALLBACK_RESERVE_S, (deadline - loop.time()) / 10)) if self.fallback else 0.0
        while True:
            changed = self._changed
            current = await self.run(self.store.job, job.id)
            outcome = await self._outcome(current)
            if outcome.status == "done":
                return outcome
            remaining = deadline - reserve - loop.time()
            if remaining <= 0:
                if self.fallback is not None:
                    return await self._finish_with_fallback(current, deadline)
                raise DeadlineExceeded(
                    f"human backend {self.name!r}: {outcome.rated} of {len(outcome.scores)} items rated before the "
                    f"deadline and no fallback is configured; retry with the same request_id to keep waiting, "
                    f"or poll GET /v1/jobs/{job.id}",
                    retry_after_s=5, details={"job_id": job.id, "rated": outcome.rated, "items": len(outcome.scores)},
                )
            try:
                await asyncio.wait_for(changed.wait(), min(self.settings.poll_interval_s, remaining))
            except asyncio.TimeoutError:
                pass

    async def _outcome(self, job: Job) -> JobOutcome:
        if job.status == "done":
            r = job.result
            return JobOutcome(job.id, "done", r["scores"], r["sources"], r["ratings"], r.get("fallback_model"),
                              job.created_at, job.deadline_at, job.request_id)
        tasks = await self.run(self.store.job_tasks, job.id)
        rewards, counts = scoring.item_rewards(tasks, job.n_items, self.settings.scale)
        sources = ["human" if r is not None else None for r in rewards]
        if all(t.status != "pending" for t in tasks):  # every task has its ratings: record the result once
            return await self._finish(job, rewards, sources, counts, None)
        return JobOutcome(job.id, "pending", rewards, sources, counts, None, job.created_at, job.deadline_at,
                          job.request_id)

    async def _finish_with_fallback(self, job: Job, deadline: float | None = None) -> JobOutcome:
        tasks = await self.run(self.store.job_tasks, job.id)
        rewards, counts = scoring.item_rewards(tasks, job.n_items, self.settings.scale)
        sources = ["human" if r is not None else "fallback" for r in rewards]
        missing = [i for i, r in enumerate(rewards) if r is None]
        fallback_model = None
        if missing:
            pairs = self._job_pairs(tasks, job.n_items)
            try:
                scores, fallback_model = await self.fallback.score_versioned([pairs[i] for i in missing], deadline)
            except RewardServiceError:
                raise
            except Exception as exc:
                raise BackendFailed(
                    f"human backend {self.name!r}: fallback {self.fallback.name!r} failed: {type(exc).__name__}: {exc}",
                    retry_after_s=2) from exc
            for i, score in zip(missing, scores):
                rewards[i] = float(score)
        return await self._finish(job, rewards, sources, counts, fallback_model)

    async def _finish(self, job, rewards, sources, counts, fallback_model) -> JobOutcome:
        result = {"scores": rewards, "sources": sources, "ratings": counts, "fallback_model": fallback_model}
        finished = await self.run(self.store.finish_job, job.id, result)
        return await self._outcome(finished)  # the first recorded result wins, also across replicas

    @staticmethod
    def _job_pairs(tasks, n_items: int) -> list[Pair]:
        pairs: list[Pair | None] = [None] * n_items
        for task in tasks:
            for item, response in zip(task.items, task.responses):
                pairs[item] = Pair(task.prompt, response)
        return pairs

    # -- the plain protocol (ensembles call this) ---------------------------------------------------

    async def score(self, pairs: list[Pair], deadline: float | None = None) -> list[float]:
        return (await self.score_versioned(pairs, deadline))[0]

    async def score_versioned(self, pairs: list[Pair], deadline: float | None = None) -> tuple[list[float], str]:
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.settings.default_timeout_s
        job = await self.submit(pairs, None, deadline - loop.time())
        outcome = await self.wait(job, deadline)
        return outcome.scores, self.model_version
