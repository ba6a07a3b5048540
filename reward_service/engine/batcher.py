"""Dynamic batching: many requests' items, few forward passes.

Each model-based backend owns one `DynamicBatcher`. Requests put their
pre-tokenised items (rows: whatever the inference function takes, opaque here
apart from their length) in its queue; one worker task takes everything waiting
(after letting the first item wait up to `max_wait_ms` for company), drops items
whose request expired or was cancelled, sorts the rest by length so rows of
similar length share a batch (less padding), cuts batches by `max_batch_size`
and `max_batch_tokens`, and runs them off the event loop, up to `workers`
batches at once (each in its own thread). A batch is cut when a worker is free
to run it, from everything waiting then, so items that arrive while the workers
are busy join the next batch (continuous batching); `max_wait_ms` applies only
when nothing is running. Results go back to each request in its own order.

Why several small batches at once on a CPU: measured on 2 cores with MiniLM int8,
batches of ~512 tokens run two at a time (one onnxruntime thread each) scored 440
items/s, where one batch of ~4,300 tokens at a time on both threads scored 313: the
small batches' activations stay in the cores' caches, and two independent batches
need no synchronisation between the threads inside every operator. The runtime picks
these defaults (`runtime.batch_plan`); config overrides them.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from reward_service.config import BatchingSettings
from reward_service.errors import DeadlineExceeded, Overloaded

Row = Any  # one encoded item; the batcher only asks its length (tokens)
DEFAULT_BATCH_TOKENS = 16384  # when neither config nor runtime says: a memory bound, not a speed one
DEFAULT_WAIT_MS = 2.0
InferFn = Callable[[list[Row]], np.ndarray]  # rows -> one row of outputs per input row


@dataclass(eq=False)
class _Request:
    rows: list[Row]
    lengths: list[int]
    deadline: float | None
    future: asyncio.Future
    results: list[np.ndarray | None] = field(default_factory=list)
    remaining: int = 0

    def dead(self, now: float) -> bool:
        return self.future.done() or (self.deadline is not None and now >= self.deadline)


@dataclass
class BatchStats:
    """Counters the metrics layer reads; the batcher itself knows nothing of Prometheus."""

    batches: int = 0
    items: int = 0
    dropped_items: int = 0
    rejected_requests: int = 0
    observers: list[Callable[[int, int, float, float], None]] = field(default_factory=list)


class DynamicBatcher:
    def __init__(self, infer: InferFn, settings: BatchingSettings, name: str = "model",
                 length: Callable[[Row], int] = len):
        self._infer = infer
        self._length = length
        self.settings = settings
        self.name = name
        self._pending: list[tuple[_Request, int, float]] = []  # (request, item index, enqueue time)
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task | None = None
        self._in_flight: set[asyncio.Task] = set()
        self._batches: list[list] = []  # the queue as last cut; cut again only when items arrived since
        self._arrived = False
        self._taken = 0  # items taken from the queue whose batch has not finished
        self.stats = BatchStats()

    @property
    def workers(self) -> int:
        """Batches run at once (each in its own thread)."""
        return self.settings.workers or 1

    @property
    def max_batch_tokens(self) -> int:
        return self.settings.max_batch_tokens or DEFAULT_BATCH_TOKENS

    @property
    def max_wait_ms(self) -> float:
        return DEFAULT_WAIT_MS if self.settings.max_wait_ms is None else self.settings.max_wait_ms

    def configure(self, settings: BatchingSettings) -> None:
        """New settings (the runtime's defaults filled in), before the first request."""
        if self._worker is not None:
            raise RuntimeError("configure the batcher before it starts")
        self.settings = settings

    @property
    def queued_items(self) -> int:
        """Items waiting: still queued, or taken by the worker and not yet run."""
        return len(self._pending) + self._taken

    def start(self) -> None:
        if self._worker is None or self._worker.done():
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"infer-{self.name}")
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        for task in list(self._in_flight):
            task.cancel()  # _run_batch tells its requests
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        for request, _, _ in self._pending:
            if not request.future.done():
                request.future.set_exception(_shutting_down())
        self._pending.clear()
        self._batches.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def submit(self, rows: list[Row], deadline: float | None = None) -> np.ndarray:
        """Queue one request's rows; return its outputs stacked in the same order.

        Raises Overloaded when the queue is full, DeadlineExceeded when the
        deadline (event-loop time) passes first. Cancelling the caller drops its
        items before inference.
        """
        if not rows:
            return np.zeros((0,), dtype=np.float32)
        if self.queued_items + len(rows) > self.settings.max_queue_items:
            self.stats.rejected_requests += 1
            raise Overloaded(
                f"backend {self.name!r} has {self.queued_items} items queued (limit "
                f"{self.settings.max_queue_items}); retry shortly",
                retry_after_s=1,
            )
        self.start()
        loop = asyncio.get_running_loop()
        request = _Request(rows, [self._length(row) for row in rows], deadline, loop.create_future())
        request.results = [None] * len(rows)
        request.remaining = len(rows)
        now = time.perf_counter()
        self._pending.extend((request, i, now) for i in range(len(rows)))
        self._arrived = True
        self._wakeup.set()
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), timeout)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"deadline passed while {self.name!r} was scoring") from None
        finally:
            if not request.future.done():
                request.future.cancel()  # the worker skips this request's items

    async def _run(self) -> None:
        """Whenever a worker is free, run the next batch: cut from everything waiting then (so
        late arrivals join), the batch holding the oldest item (so none starves)."""
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.workers)
        while True:
            if not self._pending:
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            await slots.acquire()  # a worker is free; items keep queueing while none is
            if not self._in_flight:  # nothing running: the first item may wait for company
                await self._gather_company()
            batch = self._next_batch(loop)
            if not batch:
                slots.release()
                continue
            self._taken += len(batch)
            task = loop.create_task(self._run_batch(batch, loop))
            self._in_flight.add(task)
            task.add_done_callback(lambda done, size=len(batch): self._finished(done, size, slots))

    async def _gather_company(self) -> None:
        """Let the oldest item wait until max_wait_ms after it arrived for company, unless what
        is queued already fills a batch."""
        waited_until = min(t for _, _, t in self._pending) + self.max_wait_ms / 1000
        while (len(self._pending) < self.settings.max_batch_size
               and sum(request.lengths[i] for request, i, _ in self._pending) < self.max_batch_tokens):
            remaining = waited_until - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _finished(self, task: asyncio.Task, size: int, slots: asyncio.Semaphore) -> None:
        self._in_flight.discard(task)
        self._taken -= size
        slots.release()

    def _next_batch(self, loop: asyncio.AbstractEventLoop) -> list[tuple[_Request, int, float]]:
        """Drop the items whose request no longer waits (telling those past their deadline), cut
        the rest into batches, take the one with the oldest item; the others stay queued."""
        now = loop.time()
        taken, self._pending = self._pending, []
        alive = [entry for entry in taken if not entry[0].dead(now)]
        self.stats.dropped_items += len(taken) - len(alive)
        for request, _, _ in taken:
            if request.deadline is not None and now >= request.deadline and not request.future.done():
                request.future.set_exception(DeadlineExceeded(f"deadline passed in {self.name!r} queue"))
        if self._arrived or len(alive) != len(taken):  # the last cut is stale: cut again (sorting all)
            self._batches, self._arrived = self._cut(alive), False
        if not self._batches:
            return []
        batches = self._batches
        chosen = batches.pop(min(range(len(batches)), key=lambda b: min(entry[2] for entry in batches[b])))
        self._pending = [entry for batch in batches for entry in batch]
        return chosen

    def _cut(self, entries: list[tuple[_Request, int, float]]) -> list[list[tuple[_Request, int, float]]]:
        """Sort by length, then cut greedily under the size and padded-token budgets."""
        entries = sorted(entries, key=lambda e: e[0].lengths[e[1]])
        batches, current, longest = [], [], 0
        for entry in entries:
            length = entry[0].lengths[entry[1]]
            grown = max(longest, length)
            if current and (
                len(current) >= self.settings.max_batch_size
                or grown * (len(current) + 1) > self.max_batch_tokens
            ):
                batches.append(current)
                current, grown = [], length
            current.append(entry)
            longest = grown
        if current:
            batches.append(current)
        return batches

    async def _run_batch(self, batch: list[tuple[_Request, int, float]], loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        batch = [entry for entry in batch if not entry[0].dead(now)]
        if not batch:
            return
        rows = [request.rows[i] for request, i, _ in batch]
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self._infer, rows)
        except BaseException as exc:  # the model failed (keep serving), or the batcher is closing
            closing = isinstance(exc, asyncio.CancelledError)
            for request, _, _ in batch:
                if not request.future.done():
                    request.future.set_exception(_shutting_down() if closing else exc)
            if closing:
                raise
            return
        finished = time.perf_counter()
        self.stats.batches += 1
        self.stats.items += len(batch)
        tokens = max(request.lengths[i] for request, i, _ in batch) * len(batch)
        for observe in self.stats.observers:
            observe(len(batch), tokens, finished - started, started - min(t for _, _, t in batch))
        for (request, index, _), row in zip(batch, outputs):
            if request.future.done():
                continue
            request.results[index] = row
            request.remaining -= 1
            if request.remaining == 0:
                request.future.set_result(np.stack(request.results))


def _shutting_down() -> DeadlineExceeded:
    return DeadlineExceeded("service shutting down", retry_after_s=1)
