"""A scoring request's life in the human queue: a job of rating tasks, until it has its rewards.

A job is made once per request (a retry with the same request_id finds the same
job), waited on until every item is rated or its deadline passes, and finished
exactly once: with the raters' rewards, or at the deadline with the fallback
scoring what is still unrated. Without a fallback, a job past its deadline keeps
waiting in the store, and the waiting request gets `DeadlineExceeded`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from reward_service.errors import BackendFailed, Conflict, DeadlineExceeded, RewardServiceError
from reward_service.human import rewards
from reward_service.human.queue import HumanQueue
from reward_service.human.store import Job, Task
from reward_service.items import Item, Scored, fingerprint

log = logging.getLogger(__name__)

FALLBACK_RESERVE_S = 1.0  # a blocking wait ends this much before the deadline when a fallback must still score
SWEEP_INTERVAL_S = 1.0  # how often jobs past their deadline are finished with the fallback

Fallback = Callable[[list[Item], float | None], Awaitable[Scored]]  # another backend's score()


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

    @property
    def pending(self) -> bool:
        return self.status == "pending"


class Jobs:
    def __init__(self, queue: HumanQueue, fallback: Fallback | None = None, fallback_name: str | None = None):
        self.queue = queue
        self.fallback = fallback
        self.fallback_name = fallback_name
        self._sweeper: asyncio.Future | None = None

    def start_sweeping(self) -> None:
        """Finish overdue jobs in the background (only needed with a fallback)."""
        if self.fallback is not None and self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep_overdue_jobs())

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()

    async def submit(self, items: list[Item], request_id: str | None, timeout_s: float) -> Job:
        """The job for these items: a new one, or the one this request_id made before."""
        items_fingerprint = fingerprint([item.key() for item in items])
        settings = self.queue.settings
        tasks = rewards.make_tasks(items, settings.rank_groups, settings.max_rank_size)
        job, created = await self.queue.create_job(request_id, items_fingerprint, len(items), tasks,
                                                   time.time() + timeout_s)
        if not created and job.fingerprint != items_fingerprint:
            raise Conflict.of_request_id(request_id)
        if created:
            log.info("human job %s: %d items, %d tasks", job.id, len(items), len(tasks))
        return job

    async def outcome(self, job_id: str) -> JobOutcome | None:
        """The job as it stands. An async job past its deadline is finished here (with the fallback)."""
        job = await self.queue.job(job_id)
        if job is None or job.backend != self.queue.name:
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
            changed = self.queue.changed
            current = await self.queue.job(job.id)
            outcome = await self._outcome(current)
            if not outcome.pending:
                return outcome
            remaining = deadline - reserve - loop.time()
            if remaining <= 0:
                if self.fallback is not None:
                    return await self._finish_with_fallback(current, deadline)
                raise DeadlineExceeded(
                    f"human backend {self.queue.name!r}: {outcome.rated} of {len(outcome.scores)} items rated "
                    f"before the deadline and no fallback is configured; retry with the same request_id to keep "
                    f"waiting, or poll GET /v1/jobs/{job.id}",
                    retry_after_s=5, details={"job_id": job.id, "rated": outcome.rated, "items": len(outcome.scores)},
                )
            try:
                await asyncio.wait_for(changed.wait(), min(self.queue.settings.poll_interval_s, remaining))
            except asyncio.TimeoutError:
                pass

    async def _sweep_overdue_jobs(self) -> None:
        """Finish jobs past their deadline with the fallback even when nobody waits or polls
        (an async job never polled, a client that went away, jobs left from before a restart),
        so their unrated tasks leave the raters' queue on time."""
        while True:
            try:
                for job in await self.queue.overdue_jobs():
                    await self._finish_with_fallback(job)
            except Exception as exc:  # the store or the fallback is down: try again next round
                log.warning("human backend %r: overdue-job sweep failed: %s", self.queue.name, exc)
            await asyncio.sleep(SWEEP_INTERVAL_S)

    async def _outcome(self, job: Job) -> JobOutcome:
        if job.status == "done":
            r = job.result
            return JobOutcome(job.id, "done", r["scores"], r["sources"], r["ratings"], r.get("fallback_model"),
                              job.created_at, job.deadline_at, job.request_id)
        tasks = await self.queue.job_tasks(job.id)
        scores, counts = rewards.item_rewards(tasks, job.n_items, self.queue.settings.scale)
        sources = ["human" if r is not None else None for r in scores]
        if all(t.status != "pending" for t in tasks):  # every task has its ratings: record the result once
            return await self._finish(job, scores, sources, counts, None)
        return JobOutcome(job.id, "pending", scores, sources, counts, None, job.created_at, job.deadline_at,
                          job.request_id)

    async def _finish_with_fallback(self, job: Job, deadline: float | None = None) -> JobOutcome:
        tasks = await self.queue.job_tasks(job.id)
        scores, counts = rewards.item_rewards(tasks, job.n_items, self.queue.settings.scale)
        sources = ["human" if r is not None else "fallback" for r in scores]
        missing = [i for i, r in enumerate(scores) if r is None]
        fallback_model = None
        if missing:
            items = _job_items(tasks, job.n_items)
            try:
                scored = await self.fallback([items[i] for i in missing], deadline)
            except RewardServiceError:
                raise
            except Exception as exc:
                raise BackendFailed(
                    f"human backend {self.queue.name!r}: fallback {self.fallback_name!r} failed: "
                    f"{type(exc).__name__}: {exc}", retry_after_s=2) from exc
            fallback_model = scored.model
            for i, score in zip(missing, scored.scores):
                scores[i] = float(score)
        return await self._finish(job, scores, sources, counts, fallback_model)

    async def _finish(self, job, scores, sources, counts, fallback_model) -> JobOutcome:
        result = {"scores": scores, "sources": sources, "ratings": counts, "fallback_model": fallback_model}
        finished = await self.queue.finish_job(job.id, result)
        return await self._outcome(finished)  # the first recorded result wins, also across replicas


def _job_items(tasks: list[Task], n_items: int) -> list[Item]:
    items: list[Item | None] = [None] * n_items
    for task in tasks:
        for index, response in zip(task.items, task.responses):
            items[index] = Item(task.prompt, response)
    return items
