"""One human rating queue: the single way in to its store, for routes, jobs, CLI and metrics.

`HumanQueue` owns the store connection and the threads its (blocking) calls run
in, knows the raters' tokens, and speaks in domain terms: a rater's next task, a
rating, a skip, the rated tasks for export. Store failures arrive as domain
errors (`StoreError` is a retryable `BackendFailed`; a wrong rating is a
`TaskConflict` or `InvalidInput`), so nothing above maps them by hand.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

from reward_service import model_store
from reward_service.auth import find_token
from reward_service.config import HumanBackendSettings
from reward_service.errors import InvalidInput, NotFound, shown
from reward_service.human import export, rewards
from reward_service.human.store import Job, NewTask, Store, Task, redact_url

log = logging.getLogger(__name__)

STORE_THREADS = 4  # the queue's own threads for store calls
REOPEN_INTERVAL_S = 2.0  # how often a store that could not be opened at start is tried again


def store_url(settings: HumanBackendSettings) -> str:
    """`sqlite` means the default file in the cache root (REWARD_SERVICE_HOME)."""
    if settings.store == "sqlite":
        return f"sqlite:///{model_store.home() / 'human-queue.sqlite3'}"
    return settings.store


class HumanQueue:
    def __init__(self, name: str, settings: HumanBackendSettings):
        self.name = name
        self.settings = settings
        self.store: Store | None = None
        self._executor = ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix=f"human-{name}")
        self._changed = asyncio.Event()
        self.rating_observers: list[Callable[[str, float | None], None]] = []  # (rater, seconds) per stored rating

    # -- the store ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store and create the schema; raises if the database cannot be reached."""
        store = await asyncio.to_thread(Store.open, store_url(self.settings))
        try:
            await asyncio.to_thread(store.create_schema)
        except BaseException:
            await asyncio.to_thread(store.close)
            raise
        self.store = store

    async def close(self) -> None:
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        self._executor.shutdown(wait=False)

    async def _call(self, method, *args):
        """A store method in this queue's own threads (a stuck database cannot starve the
        threads other backends use). Its failures are domain errors already."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(method, *args))

    # -- jobs (their life cycle is `human.jobs`) ---------------------------------------------------

    async def create_job(self, request_id: str | None, fingerprint: str, n_items: int, tasks: list[NewTask],
                         deadline_at: float) -> tuple[Job, bool]:
        """The job for this request: (a new one, True), or (the one this request_id made, False)."""
        return await self._call(self.store.create_job, self.name, request_id, fingerprint, n_items, tasks,
                                self.settings.overlap, deadline_at)

    async def job(self, job_id: str) -> Job | None:
        return await self._call(self.store.job, job_id)

    async def job_tasks(self, job_id: str) -> list[Task]:
        return await self._call(self.store.job_tasks, job_id)

    async def overdue_jobs(self) -> list[Job]:
        return await self._call(self.store.overdue_jobs, self.name)

    async def finish_job(self, job_id: str, result: dict) -> Job:
        """Record the result once: the first recorded one wins, also across replicas."""
        return await self._call(self.store.finish_job, job_id, result)

    @property
    def location(self) -> str:
        """Where the store is, with any password masked (for messages)."""
        return redact_url(store_url(self.settings))

    @property
    def changed(self) -> asyncio.Event:
        """Set (and replaced) whenever a rating is stored in this process."""
        return self._changed

    # -- raters ------------------------------------------------------------------------------------

    def rater_for(self, token: str | None) -> str | None:
        """The rater name this token belongs to (constant-time comparison), or None."""
        return find_token(token, self.settings.raters)

    async def waiting_for(self, rater: str) -> int:
        return await self._call(self.store.waiting_for, self.name, rater)

    async def next_task(self, rater: str) -> Task | None:
        """The rater's next task: the same one until they rate or skip it, or its lease ends."""
        return await self._call(self.store.claim_next, self.name, rater, self.settings.lease_s)

    async def task(self, task_id: str) -> Task:
        task = await self._call(self.store.task, task_id)
        if task is None or task.backend != self.name:
            raise NotFound(f"no task {shown(task_id)} in human backend {self.name!r}")
        return task

    async def rate(self, task_id: str, rater: str, score: float | None, ranking: list[int] | None) -> tuple[Task, bool]:
        """Store a rating after checking it fits the task. Returns the task and whether the
        rating counts toward the reward (False: it came after the task had its ratings)."""
        problem = rewards.validate_rating(await self.task(task_id), self.settings.scale, score, ranking)
        if problem:
            raise InvalidInput(problem)
        task, stored = await self._call(self.store.rate, task_id, rater, score, ranking)
        mine = next(r for r in task.ratings if r.rater == rater)
        if stored:
            self._rating_stored(rater, mine.seconds)
        return task, mine.counted

    async def skip(self, task_id: str, rater: str) -> None:
        await self.task(task_id)
        await self._call(self.store.skip, task_id, rater)

    def _rating_stored(self, rater: str, seconds: float | None) -> None:
        """Wake the requests waiting in this process (others notice on their next poll)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for observe in self.rating_observers:
            observe(rater, seconds)

    # -- reading it out ------------------------------------------------------------------------------

    async def stats(self) -> dict:
        """Pending tasks and the age of the oldest (for metrics and the summary)."""
        return await self._call(self.store.queue_stats, self.name)

    async def export_lines(self, fmt: str) -> Iterator[str]:
        """Every rated task as JSON lines in `fmt` (see `human.export`)."""
        return export.lines(await self._call(self.store.rated_tasks, self.name), self.settings.scale, fmt)

    async def summary(self) -> dict:
        """Queue length, ratings per rater, time to rate and inter-rater agreement."""
        tasks = await self._call(self.store.rated_tasks, self.name)
        return {"backend": self.name, **await self.stats(), **export.summary(tasks, self.settings.scale)}
