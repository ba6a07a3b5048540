"""Benchmark: the engine and the service against the scorers of the classic tutorials.

Runs every row in one process (the HTTP row starts the real server as a child
process and drives it over loopback), on the same inputs: real Rotten Tomatoes
review texts as (prompt, response) pairs of about 64 tokens, scored by the
builtin `sentiment-minilm-rt` model. Prints a table and writes JSON.

    .venv/bin/python bench/run.py                 # full run, ~5 minutes on 2 cores
    .venv/bin/python bench/run.py --items 256     # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reward_service import model_store  # noqa: E402
from reward_service.config import BatchingSettings, SentimentBackendSettings  # noqa: E402
from reward_service.engine.model import ModelEngine  # noqa: E402
from reward_service.items import Item  # noqa: E402
from reward_service.training import data  # noqa: E402

TARGET_TOKENS = 64
REQUEST_ITEMS = 32  # items per request for the engine and HTTP rows: one rollout mini-batch


# ---------------------------------------------------------------- inputs


def make_items(tokenizer, count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, response) pairs of ~64 tokens: a review's opening words, then the review
    continued with further reviews of the same movie until the pair reaches the target,
    its end trimmed to at most 8 tokens over it (so no row has anything to truncate)."""
    reviews = data.load_reviews()
    by_movie: dict[str, list[str]] = {}
    for review in reviews:
        by_movie.setdefault(review.movie, []).append(review.text)
    rng = random.Random(seed)
    movies = sorted(by_movie)
    items = []
    while len(items) < count:
        texts = by_movie[rng.choice(movies)][:]
        rng.shuffle(texts)
        words = texts[0].split()
        prompt, response = " ".join(words[:4]), " " + " ".join(words[4:])
        for extra in texts[1:]:
            if len(tokenizer(prompt, response)["input_ids"]) >= TARGET_TOKENS - 8:
                break
            response += " " + extra
        words = response.split(" ")
        while len(tokenizer(prompt, " ".join(words))["input_ids"]) > TARGET_TOKENS + 8:  # nothing is cut later
            words.pop()
        response = " ".join(words)
        if len(tokenizer(prompt, response)["input_ids"]) >= TARGET_TOKENS - 16:
            items.append((prompt, response))
    return items


def percentiles(latencies_s: list[float]) -> tuple[float, float]:
    values = np.array(latencies_s) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def row(name: str, items: int, seconds: float, latencies: list[float], note: str = "") -> dict:
    p50, p99 = percentiles(latencies)
    return {"name": name, "items": items, "seconds": round(seconds, 3), "items_per_s": items / seconds,
            "p50_ms": p50, "p99_ms": p99, "note": note}


# ---------------------------------------------------------------- rows


@torch.inference_mode()
def naive_scorer(model, tokenizer, items) -> dict:
    """(a) The classic tutorial scorer: one pair at a time, padded to 512 tokens, PyTorch."""
    latencies = []
    started = time.perf_counter()
    for prompt, response in items:
        t = time.perf_counter()
        encoded = tokenizer(prompt, response, padding="max_length", max_length=512, truncation=True,
                            return_tensors="pt")
        torch.softmax(model(**encoded).logits, -1)[:, 1].item()
        latencies.append(time.perf_counter() - t)
    return row("a) naive: 1 pair at a time, pad 512, PyTorch", len(items), time.perf_counter() - started, latencies,
               "latency per item")


@torch.inference_mode()
def eager_batched(model, tokenizer, items, max_length: int) -> dict:
    """(b) What a transformers pipeline does: batches of 32, padded to the longest, PyTorch eager."""
    latencies = []
    started = time.perf_counter()
    for i in range(0, len(items), REQUEST_ITEMS):
        chunk = items[i: i + REQUEST_ITEMS]
        t = time.perf_counter()
        encoded = tokenizer([p for p, _ in chunk], [r for _, r in chunk], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
        torch.softmax(model(**encoded).logits, -1)[:, 1].tolist()
        latencies.append(time.perf_counter() - t)
    return row(f"b) PyTorch eager, batches of {REQUEST_ITEMS}", len(items), time.perf_counter() - started,
               latencies, f"latency per batch of {REQUEST_ITEMS}")


def engine_settings(precision: str, max_length: int) -> SentimentBackendSettings:
    return SentimentBackendSettings(
        type="sentiment", model="sentiment-minilm-rt", runtime="onnx", precision=precision, device="cpu",
        use_prompt=True, max_length=max_length, batching=BatchingSettings(max_batch_size=64, max_wait_ms=2),
    )


def engine_rows(items, max_length: int) -> tuple[list[dict], dict]:
    """(c, d) The engine in process: every request of 32 items submitted at once, batched dynamically."""
    rows, fidelity = [], {}
    for label, precision in (("c) engine, ONNX fp32", "fp32"), ("d) engine, ONNX int8", "int8")):
        engine = ModelEngine("bench", model_store.resolve("sentiment-minilm-rt"),
                             engine_settings(precision, max_length)).load()
        described = engine.describe()
        if described["precision"] != precision:
            raise SystemExit(f"engine refused {precision}: {described.get('notes')}")
        if precision == "int8":
            fidelity = described.get("int8_fidelity_vs_fp32", {})

        async def run():
            async def one(chunk):
                t = time.perf_counter()
                await engine.outputs([Item(p, r) for p, r in chunk])
                return time.perf_counter() - t

            await engine.outputs([Item(*items[0])])  # warm-up
            chunks = [items[i: i + REQUEST_ITEMS] for i in range(0, len(items), REQUEST_ITEMS)]
            started = time.perf_counter()
            latencies = await asyncio.gather(*(one(c) for c in chunks))
            elapsed = time.perf_counter() - started
            await engine.close()
            return elapsed, list(latencies)

        elapsed, latencies = asyncio.run(run())
        rows.append(row(label, len(items), elapsed, latencies,
                        f"all {len(items) // REQUEST_ITEMS} requests of {REQUEST_ITEMS} at once; latency per request"))
    return rows, fidelity


def start_server(max_length: int) -> tuple[subprocess.Popen, str]:
    from bench.load import start_service

    config = Path(tempfile.mkdtemp(prefix="reward-bench-")) / "bench.yaml"
    config.write_text(f"""
default_backend: sentiment
backends:
  sentiment:
    type: sentiment
    model: sentiment-minilm-rt
    runtime: onnx
    device: cpu
    precision: int8
    use_prompt: true
    max_length: {max_length}
    batching: {{max_batch_size: 64, max_wait_ms: 2}}
""")
    return start_service(config)


def http_rows(items, max_length: int, clients: int, single_requests: int) -> list[dict]:
    """(e) The real service over real HTTP: 32 concurrent clients, then one client sending single items."""
    import httpx

    process, url = start_server(max_length)
    try:
        async def concurrent():
            chunks = [items[i: i + REQUEST_ITEMS] for i in range(0, len(items), REQUEST_ITEMS)]
            queue: asyncio.Queue = asyncio.Queue()
            for chunk in chunks:
                queue.put_nowait(chunk)
            latencies = []
            limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
            async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
                await client.post("/score", json={"items": [{"prompt": "warm", "response": "up"}]})

                async def worker():
                    while not queue.empty():
                        chunk = queue.get_nowait()
                        body = {"items": [{"prompt": p, "response": r} for p, r in chunk]}
                        t = time.perf_counter()
                        response = await client.post("/score", json=body)
                        response.raise_for_status()
                        assert len(response.json()["scores"]) == len(chunk)
                        latencies.append(time.perf_counter() - t)

                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(clients)))
                return time.perf_counter() - started, latencies

        elapsed, latencies = asyncio.run(concurrent())
        concurrent_row = row(f"e) HTTP service, {clients} concurrent clients", len(items), elapsed, latencies,
                             f"requests of {REQUEST_ITEMS} items, int8; latency per request")
        single_latencies = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for prompt, response in items[:single_requests]:
                t = time.perf_counter()
                client.post("/score", json={"items": [{"prompt": prompt, "response": response}]}).raise_for_status()
                single_latencies.append(time.perf_counter() - t)
        single_row = row("e') HTTP service, single-item requests", single_requests, sum(single_latencies),
                         single_latencies, "one client, one item per request, sequential")
        return [concurrent_row, single_row]
    finally:
        process.terminate()
        process.wait(10)


def gemm_flops(seconds: float = 3.0, n: int = 1024) -> float:
    """(f) The machine's own limit: fp32 GEMM FLOP/s with PyTorch's BLAS, all threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
    return 2 * n ** 3 * runs / (time.perf_counter() - started)


def model_flops_per_item(config, tokens: float) -> float:
    """Forward FLOPs of a BERT encoder for one sequence of `tokens` real tokens (matmuls only)."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = layers * (2 * (4 * d * d + 2 * d * ff) + 2 * 2 * tokens * d)
    return per_token * tokens


# ---------------------------------------------------------------- main


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}; torch {torch.__version__}, threads {torch.get_num_threads()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1024, help="items for rows b-e")
    parser.add_argument("--naive-items", type=int, default=64, help="items for the slow naive row")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--single-requests", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    args = parser.parse_args()

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = model_store.build("sentiment")  # builds once if missing
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    items = make_items(tokenizer, args.items)
    lengths = [len(tokenizer(p, r, truncation=True, max_length=TARGET_TOKENS + 8)["input_ids"]) for p, r in items]
    mean_tokens = float(np.mean(lengths))
    max_length = TARGET_TOKENS + 8
    print(f"{len(items)} items, tokens per pair: mean {mean_tokens:.1f}, min {min(lengths)}, max {max(lengths)}")

    rows = [naive_scorer(model, tokenizer, items[: args.naive_items]), eager_batched(model, tokenizer, items, max_length)]
    engine, fidelity = engine_rows(items, max_length)
    rows += engine
    rows += http_rows(items, max_length, args.clients, args.single_requests)
    peak = gemm_flops()
    flops = model_flops_per_item(model.config, mean_tokens)

    naive, eager = rows[0]["items_per_s"], rows[1]["items_per_s"]
    for r in rows:
        r["vs_naive"] = r["items_per_s"] / naive
        r["vs_eager"] = r["items_per_s"] / eager
        r["model_gflops"] = r["items_per_s"] * flops / 1e9
        r["share_of_gemm_peak"] = r["model_gflops"] * 1e9 / peak
    by = {r["name"][:2]: r for r in rows}
    ratios = {
        "int8_engine_vs_eager": by["d)"]["items_per_s"] / eager,
        "int8_engine_vs_naive": by["d)"]["items_per_s"] / naive,
        "http_vs_inprocess_int8": by["e)"]["items_per_s"] / by["d)"]["items_per_s"],
        "single_item_http_p50_ms": by["e'"]["p50_ms"],
    }
    result = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "model": model_store.version(path),
        "items": len(items),
        "mean_tokens": mean_tokens,
        "gemm_gflops": peak / 1e9,
        "model_gflops_per_item": flops / 1e9,
        "int8_fidelity_vs_fp32": fidelity,
        "rows": rows,
        "ratios": ratios,
    }
    print_table(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


def print_table(result: dict) -> None:
    print(f"\nmachine: {result['machine']}")
    print(f"model: {result['model']}, {result['items']} items of {result['mean_tokens']:.0f} tokens; "
          f"GEMM peak {result['gemm_gflops']:.1f} GFLOP/s; int8 fidelity {result['int8_fidelity_vs_fp32']}\n")
    print("| row | items/s | p50 ms | p99 ms | x naive (a) | x eager (b) | model GFLOP/s | % of GEMM peak |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        print(f"| {r['name']} | {r['items_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['vs_naive']:.1f} | {r['vs_eager']:.2f} | {r['model_gflops']:.1f} | "
              f"{100 * r['share_of_gemm_peak']:.0f}% |")
    print()
    for key, value in result["ratios"].items():
        print(f"{key}: {value:.2f}")


if __name__ == "__main__":
    main()
