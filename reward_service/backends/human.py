"""`human`: items become rating tasks in a persistent queue; people rate them on /label.

A request either waits until every item is rated or its deadline passes
(blocking), or gets a job id at once and polls it (async). At the deadline,
items still unrated are scored by the fallback backend and marked so; with no
fallback the job keeps waiting in the store and the waiting request gets a 504
(a retry with the same request_id resumes waiting on the same tasks).

This module only joins the pieces: the queue (`human.queue`) and the job life
cycle (`human.jobs`) live with the human queue.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

from reward_service.backends.base import DEFAULT_OPTIONS, Backend, QueuedBackend
from reward_service.config import HumanBackendSettings
from reward_service.human.jobs import JobOutcome, Jobs
from reward_service.human.queue import REOPEN_INTERVAL_S, HumanQueue
from reward_service.human.store import Job
from reward_service.items import Item, ScoreOptions, Scored

log = logging.getLogger(__name__)


class HumanBackend(QueuedBackend):
    type = "human"

    def __init__(self, name: str, settings: HumanBackendSettings, fallback: Backend | None = None):
        super().__init__(name, settings)
        self.fallback = fallback
        self.queue = HumanQueue(name, settings)
        self.jobs = Jobs(self.queue, fallback.score if fallback else None, fallback.name if fallback else None)
        self._reopening: asyncio.Future | None = None

    @property
    def model_version(self) -> str:
        """Changes when what raters are asked changes (guidelines, scale, overlap)."""
        asked = json.dumps(
            [self.settings.guidelines, self.settings.scale.model_dump(), self.settings.overlap,
             self.settings.rank_groups, self.settings.max_rank_size], sort_keys=True)
        return f"human@{hashlib.sha256(asked.encode()).hexdigest()[:8]}"

    @property
    def default_timeout_s(self) -> float:
        return self.settings.default_timeout_s

    async def load(self) -> None:
        """Open the store. If the database is not up yet (a service started before its
        PostgreSQL), the error shows in /readyz and opening is retried in the background
        until it works; then the backend turns ready by itself."""
        try:
            await self._open()
        except Exception:
            self._reopening = asyncio.ensure_future(self._open_when_reachable())
            raise

    async def _open(self) -> None:
        await self.queue.open()
        self.jobs.start_sweeping()
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
        if self._reopening is not None:
            self._reopening.cancel()
        self.jobs.stop()
        await self.queue.close()

    def details(self) -> dict:
        s = self.settings
        return {"store": "postgresql" if s.store.startswith("postgres") else "sqlite", "overlap": s.overlap,
                "fallback": s.fallback, "scale": s.scale.model_dump(), "raters": len(s.raters)}

    async def submit(self, items: list[Item], request_id: str | None, timeout_s: float) -> Job:
        return await self.jobs.submit(items, request_id, timeout_s)

    async def wait(self, job: Job, deadline: float) -> JobOutcome:
        return await self.jobs.wait(job, deadline)

    async def outcome(self, job_id: str) -> JobOutcome | None:
        return await self.jobs.outcome(job_id)

    async def score(self, items: list[Item], deadline: float | None = None,
                    options: ScoreOptions = DEFAULT_OPTIONS) -> Scored:
        """The plain protocol (an ensemble member): submit and wait, blocking."""
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.settings.default_timeout_s
        job = await self.submit(items, None, deadline - loop.time())
        outcome = await self.wait(job, deadline)
        return Scored(outcome.scores, self.model_version)
