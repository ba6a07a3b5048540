"""Benchmark of the verifiable rewards: verdict accuracy, check time, sandbox overhead and throughput.

    .venv/bin/python bench/verifiers.py        # ~1 minute on 2 cores; prints a table, writes JSON

Rows, in one process on the same machine:
- math: verdict accuracy on tests/data/math_answers.jsonl (against a careful person's verdict, and
  against what math-verify is known to answer), time per item, items/s with the configured workers;
- sandbox: wall time of a trivial program (the per-item overhead), one at a time;
- code: items/s with 1 and with 8 concurrent sandboxes on a small test case (3 asserts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reward_service.verifiers import CodeTestVerifier, MathVerifier, Sandbox, SandboxSettings  # noqa: E402

SOLUTION = "```python\ndef add(a, b):\n    return a + b\n```"
TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2, 2) == 4\n"


async def math_rows(workers: int) -> dict:
    table = [json.loads(line) for line in (ROOT / "tests" / "data" / "math_answers.jsonl").open()]
    verifier = MathVerifier(workers=workers, timeout_s=10)
    await verifier.start()
    try:
        started = time.perf_counter()
        verdicts = await verifier.verify([r["response"] for r in table], [r["reference"] for r in table])
        elapsed = time.perf_counter() - started
    finally:
        await verifier.close()
    person = sum(v.outcome == r["expected"] or (v.outcome != "correct" and r["expected"] != "correct")
                 for v, r in zip(verdicts, table))
    known = sum(v.outcome == r.get("math_verify", r["expected"]) or
                (v.outcome != "correct" and r.get("math_verify", r["expected"]) != "correct")
                for v, r in zip(verdicts, table))
    seconds = sorted(v.seconds for v in verdicts)
    return {"pairs": len(table), "accuracy_vs_person": round(person / len(table), 4),
            "accuracy_vs_known_math_verify": round(known / len(table), 4), "workers": workers,
            "items_per_s": round(len(table) / elapsed, 1), "median_ms": round(statistics.median(seconds) * 1000, 1),
            "p90_ms": round(seconds[int(0.9 * (len(seconds) - 1))] * 1000, 1)}


async def sandbox_rows(runs: int, items: int) -> dict:
    one = Sandbox(SandboxSettings(max_concurrent=1))
    await one.start()
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        await one.run("pass")
        walls.append(time.perf_counter() - started)
    rows = {"sandbox_overhead_median_ms": round(statistics.median(walls) * 1000, 1),
            "sandbox_overhead_p90_ms": round(sorted(walls)[int(0.9 * (runs - 1))] * 1000, 1),
            "describe": one.describe()}
    for concurrent in (1, 8):
        sandbox = Sandbox(SandboxSettings(max_concurrent=concurrent, max_queued=items))
        await sandbox.start()
        verifier = CodeTestVerifier(sandbox)
        started = time.perf_counter()
        verdicts = await verifier.verify([SOLUTION] * items, [TESTS] * items)
        elapsed = time.perf_counter() - started
        assert all(v.reward == 1.0 for v in verdicts), verdicts[:3]
        rows[f"code_items_per_s_{concurrent}_sandboxes"] = round(items / elapsed, 1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "verifiers.json"))
    args = parser.parse_args()
    result = {"machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, {platform.python_version()}",
              "math": asyncio.run(math_rows(args.workers)), "sandbox": asyncio.run(sandbox_rows(args.runs, args.items))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    m, s = result["math"], result["sandbox"]
    print(f"machine: {result['machine']}")
    print(f"math   {m['pairs']} pairs: accuracy {m['accuracy_vs_person']:.3f} vs a person, "
          f"{m['accuracy_vs_known_math_verify']:.3f} vs math-verify's known answers; "
          f"{m['items_per_s']} items/s with {m['workers']} workers, median {m['median_ms']} ms, p90 {m['p90_ms']} ms")
    print(f"sandbox overhead (trivial program): median {s['sandbox_overhead_median_ms']} ms, "
          f"p90 {s['sandbox_overhead_p90_ms']} ms")
    print(f"code   {s['code_items_per_s_1_sandboxes']} items/s with 1 sandbox, "
          f"{s['code_items_per_s_8_sandboxes']} items/s with 8 concurrent sandboxes")


if __name__ == "__main__":
    main()
