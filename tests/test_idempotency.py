"""request_id: one scoring per id, shared by concurrent retries; failures are not remembered."""

import asyncio

import pytest

from reward_service.errors import Conflict, DeadlineExceeded
from reward_service.idempotency import IdempotencyCache


async def _concurrent_duplicates():
    cache, calls = IdempotencyCache(8), []

    async def work():
        calls.append(1)
        await asyncio.sleep(0.05)
        return [0.5]

    results = await asyncio.gather(*(cache.once("b", "id-1", "fp", work) for _ in range(5)))
    again = await cache.once("b", "id-1", "fp", work)
    other_backend = await cache.once("other", "id-1", "fp", work)
    return calls, results, again, other_backend


def test_concurrent_retries_share_one_scoring():
    calls, results, again, other = asyncio.run(_concurrent_duplicates())
    assert results == [[0.5]] * 5 and again == [0.5] and other == [0.5]
    assert len(calls) == 2  # once for ("b", "id-1"), once for ("other", "id-1")


async def _conflict_and_failure():
    cache = IdempotencyCache(8)

    async def ok():
        return [1.0]

    await cache.once("b", "x", "fp1", ok)
    with pytest.raises(Conflict):
        await cache.once("b", "x", "fp2", ok)

    attempts = []

    async def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("boom")
        return [2.0]

    with pytest.raises(RuntimeError):
        await cache.once("b", "y", "fp", flaky)
    return await cache.once("b", "y", "fp", flaky), attempts


def test_conflicting_items_and_failures_are_not_remembered():
    result, attempts = asyncio.run(_conflict_and_failure())
    assert result == [2.0] and len(attempts) == 2


async def _abandoned_first_attempt():
    cache = IdempotencyCache(8)

    async def slow():
        await asyncio.sleep(10)
        return [1.0]

    first = asyncio.ensure_future(cache.once("b", "z", "fp", slow))
    await asyncio.sleep(0.01)
    waiter = asyncio.ensure_future(cache.once("b", "z", "fp", slow))
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(DeadlineExceeded, match="abandoned"):
        await waiter


def test_a_waiting_retry_is_told_to_retry_when_the_first_attempt_is_abandoned():
    asyncio.run(_abandoned_first_attempt())


def test_oldest_ids_are_forgotten_beyond_the_size():
    async def run():
        cache, calls = IdempotencyCache(2), []

        async def work():
            calls.append(1)
            return [0.0]

        for request_id in ("a", "b", "c", "a"):
            await cache.once("b", request_id, "fp", work)
        return len(calls)

    assert asyncio.run(run()) == 4
