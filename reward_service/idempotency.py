"""Retries with the same `request_id` get the first answer, not a second scoring.

An in-flight request is shared: a retry that arrives while the first attempt is
still scoring waits for that same result. Finished answers are remembered for
the most recent `size` request ids per backend.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Awaitable, Callable, TypeVar

from reward_service.errors import Conflict, DeadlineExceeded

T = TypeVar("T")


class IdempotencyCache:
    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[tuple[str, str], tuple[str, asyncio.Future]] = OrderedDict()

    async def once(self, backend: str, request_id: str | None, items_fingerprint: str, work: Callable[[], Awaitable[T]]) -> T:
        if request_id is None or self.size == 0:
            return await work()
        key = (backend, request_id)
        entry = self._entries.get(key)
        if entry is not None:
            seen_fingerprint, future = entry
            if seen_fingerprint != items_fingerprint:
                raise Conflict.of_request_id(request_id)
            self._entries.move_to_end(key)
            return await asyncio.shield(future)
        future = asyncio.get_running_loop().create_future()
        self._entries[key] = (items_fingerprint, future)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        try:
            result = await work()
        except BaseException as exc:
            # Failures are not remembered: a retry should really retry.
            self._entries.pop(key, None)
            if not future.done():
                if isinstance(exc, asyncio.CancelledError):  # the first caller went away; waiters must not look cancelled
                    exc = DeadlineExceeded(
                        f"the first attempt with request_id {request_id!r} was abandoned; retry", retry_after_s=0
                    )
                future.set_exception(exc)
                future.exception()  # mark retrieved: no "never retrieved" warning when nobody waits
            raise
        future.set_result(result)
        return result
