"""Math answer verdicts: the table in data/math_answers.jsonl, credit, and timeouts.

Each table row has the verdict a careful person gives (`expected`). A few rows
are known math-verify limitations: they also say what math-verify answers
(`math_verify`) and why (`limitation`); the test checks every row against
what math-verify should answer, and reports the accuracy against `expected`.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from reward_service.verifiers.math_answer import MathVerifier, compare_final_answers

pytestmark = pytest.mark.timeout(60)

TABLE = [json.loads(line) for line in (Path(__file__).parent / "data" / "math_answers.jsonl").open()]
HANG = "<hang>"


def compare_or_hang(response: str, reference: str):
    """A comparison that never returns for HANG: a sympy simplification that runs for ever."""
    while response == HANG:
        pass
    return compare_final_answers(response, reference)


def verify(responses, references, **options):
    async def scenario():
        verifier = MathVerifier(**options)
        await verifier.start()
        try:
            return await verifier.verify(responses, references)
        finally:
            await verifier.close()

    return asyncio.run(scenario())


def test_the_table_covers_every_format_with_both_verdicts():
    assert len(TABLE) >= 40
    for kind in ("boxed", "latex", "fraction", "decimal", "percent", "set", "interval"):
        assert {row["expected"] for row in TABLE if row["format"] == kind} >= {"correct", "wrong"}, kind
    assert any(row["expected"] == "no_answer" for row in TABLE)


def test_every_verdict_in_the_table():
    started = time.monotonic()
    verdicts = verify([row["response"] for row in TABLE], [row["reference"] for row in TABLE], workers=2)
    elapsed = time.monotonic() - started
    wrong = [(row, verdict.outcome) for row, verdict in zip(TABLE, verdicts)
             if verdict.outcome != row.get("math_verify", row["expected"])]
    assert not wrong
    agree = sum(verdict.outcome == row["expected"] for row, verdict in zip(TABLE, verdicts))
    print(f"\nmath verdicts agree with a person on {agree}/{len(TABLE)} = {agree / len(TABLE):.1%}; "
          f"{elapsed / len(TABLE) * 1000:.0f} ms per item with 2 workers (start-up included), "
          f"median {sorted(v.seconds for v in verdicts)[len(verdicts) // 2] * 1000:.0f} ms in a worker")
    for row, verdict in zip(TABLE, verdicts):
        assert verdict.reward == (1.0 if verdict.outcome == "correct" else 0.0)


def test_wrong_answers_can_earn_a_little_credit():
    verdicts = verify([r"\boxed{5}", r"\boxed{4}", "no idea"], ["4", "4", "4"], wrong_answer_credit=0.1)
    assert [(v.outcome, v.reward) for v in verdicts] == [("wrong", 0.1), ("correct", 1.0), ("no_answer", 0.0)]


def test_an_unusable_reference_is_its_own_verdict():
    verdicts = verify([r"\boxed{4}", r"\boxed{4}"], ["", "\\"])
    assert [(v.outcome, v.reward) for v in verdicts] == [("bad_reference", 0.0)] * 2


def test_a_hanging_comparison_is_killed_at_the_timeout_and_the_others_complete():
    async def scenario():
        verifier = MathVerifier(workers=2, timeout_s=1.0, compare=compare_or_hang)
        await verifier.start()
        ticks_while_verifying = 0

        async def tick(verifying: asyncio.Task):
            nonlocal ticks_while_verifying
            while not verifying.done():
                await asyncio.sleep(0.01)
                ticks_while_verifying += not verifying.done()

        try:
            verifying = asyncio.create_task(verifier.verify(
                [HANG, r"\boxed{4}", HANG, r"\boxed{5}", r"\boxed{\frac{1}{2}}"], ["4", "4", "4", "4", "0.5"]))
            ticker = asyncio.create_task(tick(verifying))
            verdicts = await verifying
            await ticker
            after = await verifier.verify([r"\boxed{4}"] * 4, ["4"] * 4)  # on the replacement workers
        finally:
            await verifier.close()
        return verdicts, after, ticks_while_verifying

    verdicts, after, ticks_while_verifying = asyncio.run(scenario())
    assert [v.outcome for v in verdicts] == ["timeout", "correct", "timeout", "wrong", "correct"]
    timeouts = [v for v in verdicts if v.outcome == "timeout"]
    assert all(v.reward == 0.0 and "within 1 s; the worker was killed" in v.detail for v in timeouts)
    assert [v.outcome for v in after] == ["correct"] * 4
    # The hanging items hold the request until their kill; all the while the event loop kept
    # running other tasks (a loop blocked by the comparison would not tick until it ended).
    assert ticks_while_verifying >= 10, "the event loop was blocked"
