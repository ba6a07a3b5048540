"""Reward a response whose final answer equals the reference's, by `math-verify`.

math-verify extracts the response's final answer (the last \\boxed{}, a "final
answer is" phrase, else the last LaTeX or plain expression) and compares it with
the reference symbolically and numerically: LaTeX, fractions, decimals,
percentages, sets and intervals. A reference written without math delimiters
("1/2", "(0, 1]") is read as LaTeX math, as if inside $...$.

Every comparison runs in a worker process, `workers` of them (started through
multiprocessing's forkserver, never by forking the service, which has threads;
math-verify is preloaded so a fresh worker is ready at once). A comparison
that takes longer than `timeout_s` (sympy can simplify for ever) gets the
verdict `timeout`: its worker is killed and replaced, and nothing else waits
on it. Workers are used through asyncio, so the event loop never blocks.

Verdicts (reward in brackets):
- correct [1.0];
- wrong: an answer was found and differs [`wrong_answer_credit`, default 0.0];
- no_answer: nothing parsable in the response [0.0];
- timeout [0.0];
- bad_reference: nothing parsable in the reference [0.0];
- error: the comparison raised or its worker died; detail says how [0.0].
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Literal

Outcome = Literal["correct", "wrong", "no_answer", "timeout", "bad_reference", "error"]
Comparison = Callable[[str, str], Outcome]
_COMPARISON_OUTCOMES = ("correct", "wrong", "no_answer", "bad_reference")


@dataclass(frozen=True)
class MathVerdict:
    outcome: Outcome
    reward: float
    seconds: float  # time in the worker (or until the timeout)
    detail: str = ""


def compare_final_answers(response: str, reference: str) -> Outcome:
    """The default comparison: correct / wrong / no_answer / bad_reference. Runs in a worker."""
    # Loaded in the workers only (preloaded by the forkserver): the service needs no sympy.
    from math_verify import parse, verify

    # Time limits are ours (the worker is killed); math-verify's own use SIGALRM and would misreport.
    gold = parse(reference if _has_math_delimiters(reference) else f"${reference}$", parsing_timeout=None)
    if not gold:
        return "bad_reference"
    answer = parse(response, parsing_timeout=None)
    if not answer:
        return "no_answer"
    return "correct" if verify(gold, answer, timeout_seconds=None) else "wrong"


def _has_math_delimiters(text: str) -> bool:
    return any(mark in text for mark in ("$", "\\boxed", "\\(", "\\["))


class MathVerifier:
    """A pool of comparison workers. `await start()`, then `await verify(...)`, `await close()`.

    `compare` is what a worker runs per item: a module-level function (it is sent
    to the workers by name) taking (response, reference) and returning an Outcome.
    Replace it to change the comparison, or in tests to make one that hangs.
    """

    def __init__(self, *, workers: int = 2, timeout_s: float = 5.0, wrong_answer_credit: float = 0.0,
                 compare: Comparison = compare_final_answers):
        if not 0.0 <= wrong_answer_credit < 1.0:
            raise ValueError(f"wrong_answer_credit must be in [0, 1), not {wrong_answer_credit}")
        self.workers = workers
        self.timeout_s = timeout_s
        self.wrong_answer_credit = wrong_answer_credit
        self.compare = compare
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["math_verify", __name__])  # no effect if the forkserver runs already
        self._idle: asyncio.Queue[_Worker | None] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._replacing: set[asyncio.Task] = set()
        self._unusable_because: str | None = None

    async def start(self) -> None:
        for _ in range(self.workers):
            self._idle.put_nowait(await self._start_worker())

    async def close(self) -> None:
        """Kill the workers; a closed verifier refuses to verify."""
        for task in self._replacing:
            task.cancel()
        for worker in self._all:
            worker.kill()
        self._all.clear()
        self._refuse_from_now_on("it is closed")

    async def verify(self, responses: list[str], references: list[str]) -> list[MathVerdict]:
        """One verdict per (response, reference), in order; items run concurrently across workers."""
        if len(responses) != len(references):
            raise ValueError(f"{len(responses)} responses but {len(references)} references")
        return list(await asyncio.gather(*map(self.verify_one, responses, references)))

    async def verify_one(self, response: str, reference: str) -> MathVerdict:
        worker = await self._idle.get()
        if worker is None:
            self._idle.put_nowait(None)  # for the next one
            raise RuntimeError(f"the math verifier cannot verify: {self._unusable_because}")
        started = time.monotonic()
        try:
            status, value = await asyncio.wait_for(worker.ask((response, reference)), self.timeout_s)
        except asyncio.TimeoutError:
            self._replace(worker)
            return MathVerdict("timeout", 0.0, time.monotonic() - started,
                               f"no verdict within {self.timeout_s:g} s; the worker was killed")
        except (EOFError, OSError) as error:
            self._replace(worker)
            return MathVerdict("error", 0.0, time.monotonic() - started, f"the worker died: {error!r}")
        except asyncio.CancelledError:
            self._replace(worker)  # it may still be comparing
            raise
        self._idle.put_nowait(worker)
        seconds = time.monotonic() - started
        if status == "raised" or value not in _COMPARISON_OUTCOMES:
            return MathVerdict("error", 0.0, seconds, value if status == "raised" else f"compare returned {value!r}")
        reward = 1.0 if value == "correct" else self.wrong_answer_credit if value == "wrong" else 0.0
        return MathVerdict(value, reward, seconds)

    async def _start_worker(self) -> _Worker:
        worker = await asyncio.to_thread(_Worker, self._context, self.compare)  # the first start waits on preloading
        self._all.add(worker)
        await worker.ready()
        return worker

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._all.discard(worker)
        if self._unusable_because is not None:  # closed (or broken): nothing to replace it for
            return
        task = asyncio.create_task(self._start_replacement())
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _start_replacement(self) -> None:
        try:
            worker = await self._start_worker()
        except Exception as error:  # noqa: BLE001 - reported to every later verify
            self._refuse_from_now_on(f"a worker could not be restarted: {error!r}")
            return
        if self._unusable_because is not None:  # closed while it started
            worker.kill()
            self._all.discard(worker)
        else:
            self._idle.put_nowait(worker)

    def _refuse_from_now_on(self, reason: str) -> None:
        self._unusable_because = reason
        self._idle.put_nowait(None)  # wakes a waiting verify, which passes it on


class _Worker:
    """One worker process and the service's end of its pipe."""

    def __init__(self, context, compare: Comparison):
        self.connection, worker_end = context.Pipe()
        self.process = context.Process(target=_serve, args=(worker_end, compare), daemon=True,
                                       name="math-verify-worker")
        self.process.start()
        worker_end.close()

    async def ready(self) -> None:
        try:
            await self._receive()
        except EOFError:
            raise RuntimeError(f"a math-verify worker exited at start (exit code {self.process.exitcode}; "
                               "its stderr says why)") from None

    async def ask(self, request: tuple[str, str]) -> tuple[str, str]:
        self.connection.send(request)
        return await self._receive()

    async def _receive(self):
        """The next message, waiting without blocking the event loop. EOFError if the worker died."""
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        fd = self.connection.fileno()
        loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        return self.connection.recv()

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()


def _serve(connection: Connection, compare: Comparison) -> None:
    """The worker's loop: (response, reference) in, ("ok", outcome) or ("raised", why) out."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout disabled" warning: we time it
    connection.send("ready")
    while True:
        try:
            response, reference = connection.recv()
        except EOFError:  # the service is gone
            return
        try:
            reply = ("ok", compare(response, reference))
        except Exception as error:  # noqa: BLE001 - one item's failure, reported as its verdict
            reply = ("raised", f"{type(error).__name__}: {error}"[:500])
        connection.send(reply)
