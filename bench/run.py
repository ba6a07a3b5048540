"""Benchmark: the engine and the service against the scorers of the classic tutorials.

Runs every row in one run (the HTTP rows start the real server as a child process and
drive it over loopback with `wrk`, a C load generator that costs the 2 cores little),
on the same inputs: real Rotten Tomatoes review texts as (prompt, response) pairs of
about 64 tokens, scored by the builtin `sentiment-minilm-rt` model. The machine's own
limits are measured in the same run: onnxruntime's int8 `MatMulInteger` and fp32
`MatMul` on a 2048x384x1536 product (MiniLM's feed-forward shape), and each row's model
work is reported as a share of the int8 one. Prints a table and writes JSON.

    .venv/bin/python bench/run.py                 # full run, ~6 minutes on 2 cores
    .venv/bin/python bench/run.py --items 256     # quicker
    apt-get install wrk                           # the HTTP rows need it (--no-http skips them)
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


def engine_settings(precision: str, max_length: int, graph: str = "auto", **batching) -> SentimentBackendSettings:
    return SentimentBackendSettings(
        type="sentiment", model="sentiment-minilm-rt", runtime="onnx", precision=precision, device="cpu",
        use_prompt=True, max_length=max_length, onnx_graph=graph,
        batching=BatchingSettings(max_batch_size=64, **batching),  # unset: the runtime's defaults, as served
    )


# label, precision, graph, batching overrides: what each change bought, side by side
PREVIOUS_BATCHING = {"workers": 1, "max_batch_tokens": 16384, "max_wait_ms": 2.0}  # before continuous batching
ENGINE_ROWS = (
    ("c) engine, ONNX fp32, reference graph", "fp32", "reference", {}),
    ("c') engine, ONNX fp32, fused graph", "fp32", "fused", {}),
    ("d0) engine, ONNX int8, reference graph, previous batching", "int8", "reference", PREVIOUS_BATCHING),
    ("d1) engine, ONNX int8, fused graph, previous batching", "int8", "fused", PREVIOUS_BATCHING),
    ("d) engine, ONNX int8, reference graph", "int8", "reference", {}),
    ("d') engine, ONNX int8, fused graph (served)", "int8", "fused", {}),
)


def engine_rows(items, max_length: int) -> tuple[list[dict], dict]:
    """(c, d) The engine in process: every request of 32 items submitted at once, batched
    dynamically. Also a profile of the served row: where its wall time went."""
    rows, described = [], {}
    for label, precision, graph, batching in ENGINE_ROWS:
        engine = ModelEngine("bench", model_store.resolve("sentiment-minilm-rt"),
                             engine_settings(precision, max_length, graph, **batching)).load()
        described = engine.describe()
        if described["precision"] != precision or described["graph_variant"] != graph:
            raise SystemExit(f"engine refused {precision}/{graph}: {described.get('notes')}")
        inference = []
        engine.batcher.stats.observers.append(lambda size, tokens, run_s, waited_s: inference.append(run_s))

        async def run():
            async def one(chunk):
                t = time.perf_counter()
                await engine.outputs([Item(p, r) for p, r in chunk])
                return time.perf_counter() - t

            await engine.outputs([Item(*items[0])])  # warm-up
            inference.clear()
            chunks = [items[i: i + REQUEST_ITEMS] for i in range(0, len(items), REQUEST_ITEMS)]
            started = time.perf_counter()
            latencies = await asyncio.gather(*(one(c) for c in chunks))
            elapsed = time.perf_counter() - started
            await engine.close()
            return elapsed, list(latencies)

        elapsed, latencies = asyncio.run(run())
        result = row(label, len(items), elapsed, latencies,
                     f"all {len(items) // REQUEST_ITEMS} requests of {REQUEST_ITEMS} at once; latency per request")
        # the workers' busy share: inference time over wall time times the batches that may run at once
        result["inference_share_of_wall"] = sum(inference) / (elapsed * described["batching"]["workers"])
        rows.append(result)
    started = time.perf_counter()
    engine.encode([Item(p, r) for p, r in items], "reject")
    profile = {"encode_us_per_item": 1e6 * (time.perf_counter() - started) / len(items),
               "inference_share_of_wall": rows[-1]["inference_share_of_wall"]}
    fidelity = {"int8_vs_fp32": described.get("int8_fidelity_vs_fp32"),
                "fused_vs_reference": described.get("fused_fidelity_vs_reference"),
                "fused_operators": described.get("fused_operators")}
    return rows, {"fidelity": fidelity, "profile": profile}


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
    batching: {{max_batch_size: 64}}
""")
    return start_service(config)


WRK_SCRIPT = """
local bodies = {%s}
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "/score", {["Content-Type"] = "application/json"}, bodies[i])
end
"""


def wrk(url: str, items, per_request: int, connections: int, seconds: int) -> dict:
    """`wrk` against /score: `connections` keep-alive clients, each sending requests of
    `per_request` items back to back, rotating through the benchmark's items."""
    import re

    bodies = [json.dumps({"items": [{"prompt": p, "response": r} for p, r in items[i: i + per_request]]})
              for i in range(0, len(items) - per_request + 1, per_request)]
    script = Path(tempfile.mkdtemp(prefix="reward-wrk-")) / "score.lua"
    script.write_text(WRK_SCRIPT % ", ".join("[==[" + body + "]==]" for body in bodies))
    threads = max(1, min(2, connections))
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          url], capture_output=True, text=True, check=True).stdout
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}

    def latency(pct: str) -> float:
        value, suffix = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M).groups()
        return float(value) * unit[suffix]

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        raise SystemExit(f"wrk saw failures ({bad.group(0) if bad else ''} {errors.group(0) if errors else ''}):\n{out}")
    value, suffix = re.search(r"requests in ([\d.]+)(ms|s|m|h)", out).groups()
    elapsed = float(value) * {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}[suffix]
    return {"items": requests * per_request, "seconds": elapsed, "items_per_s": requests * per_request / elapsed,
            "p50_ms": latency(50), "p99_ms": latency(99), "requests": requests}


def http_rows(items, max_length: int, seconds: int) -> list[dict]:
    """(e) The real service over real HTTP, driven by wrk: 32 clients x 4 items, 64 clients x
    1 item (OpenRLHF sends one sample per request), and one client x 1 item (latency)."""
    import shutil

    if shutil.which("wrk") is None:
        raise SystemExit("the HTTP rows need wrk (apt-get install wrk), or run with --no-http")
    process, url = start_server(max_length)
    try:
        wrk(url, items, 4, 32, 3)  # warm-up
        shapes = (("e) HTTP service, 32 clients x 4 items", 4, 32), ("e') HTTP service, 64 clients x 1 item", 1, 64),
                  ("e'') HTTP service, 1 client x 1 item", 1, 1))
        rows = []
        for name, per_request, connections in shapes:
            measured = wrk(url, items, per_request, connections, seconds)
            rows.append({"name": name, "note": f"wrk, {measured['requests']} requests; latency per request",
                         **measured})
        return rows
    finally:
        process.terminate()
        process.wait(10)


def ort_matmul_limit(kind: str, m: int = 2048, k: int = 384, n: int = 1536, seconds: float = 3.0) -> float:
    """(limit) The machine's own matrix-product rate in onnxruntime, ops/s: int8 `MatMulInteger`
    (uint8 activations x int8 weights, the kernel dynamic int8 runs) or fp32 `MatMul`."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "int8":
        weights = [numpy_helper.from_array(rng.integers(-127, 127, (k, n), dtype=np.int8), "B"),
                   numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
                   numpy_helper.from_array(np.array(0, np.int8), "b_zero")]
        node = helper.make_node("MatMulInteger", ["A", "B", "a_zero", "b_zero"], ["Y"])
        types, feed = (TensorProto.UINT8, TensorProto.INT32), rng.integers(0, 255, (m, k), dtype=np.uint8)
    else:
        weights = [numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "B")]
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        types, feed = (TensorProto.FLOAT, TensorProto.FLOAT), rng.standard_normal((m, k), dtype=np.float32)
    graph = helper.make_graph([node], "limit", [helper.make_tensor_value_info("A", types[0], [m, k])],
                              [helper.make_tensor_value_info("Y", types[1], [m, n])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the engine runs
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        session.run(None, {"A": feed})
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, {"A": feed})
        runs += 1
    return 2 * m * k * n * runs / (time.perf_counter() - started)


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
    parser.add_argument("--items", type=int, default=1024, help="items for rows b-d")
    parser.add_argument("--naive-items", type=int, default=64, help="items for the slow naive row")
    parser.add_argument("--http-seconds", type=int, default=15, help="seconds per HTTP row")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP rows (they need wrk)")
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
    engine, found = engine_rows(items, max_length)
    rows += engine
    if not args.no_http:
        rows += http_rows(items, max_length, args.http_seconds)
    limits = {"int8_matmulinteger_gops": ort_matmul_limit("int8") / 1e9,
              "fp32_matmul_gflops": ort_matmul_limit("fp32") / 1e9, "torch_fp32_gemm_gflops": gemm_flops() / 1e9}
    flops = model_flops_per_item(model.config, mean_tokens)

    naive, eager = rows[0]["items_per_s"], rows[1]["items_per_s"]
    for r in rows:
        r["vs_naive"] = r["items_per_s"] / naive
        r["vs_eager"] = r["items_per_s"] / eager
        r["model_gflops"] = r["items_per_s"] * flops / 1e9
        r["share_of_int8_limit"] = r["model_gflops"] / limits["int8_matmulinteger_gops"]
    by = {r["name"].split(")")[0]: r for r in rows}
    served = by["d'"]
    ratios = {
        "int8_engine_vs_eager": served["items_per_s"] / eager,
        "int8_engine_share_of_int8_limit": served["share_of_int8_limit"],
        "fused_vs_reference_int8": served["items_per_s"] / by["d"]["items_per_s"],
        "continuous_batching_vs_previous_int8_fused": served["items_per_s"] / by["d1"]["items_per_s"],
    }
    if not args.no_http:
        ratios.update({
            "http_32x4_vs_inprocess": by["e"]["items_per_s"] / served["items_per_s"],
            "http_64x1_vs_inprocess": by["e'"]["items_per_s"] / served["items_per_s"],
            "single_item_http_p50_ms": by["e''"]["p50_ms"],
        })
    result = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "model": model_store.version(path),
        "items": len(items),
        "mean_tokens": mean_tokens,
        "limits": limits,
        "model_gflops_per_item": flops / 1e9,
        **found,
        "rows": rows,
        "ratios": ratios,
    }
    print_table(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


def print_table(result: dict) -> None:
    limits = result["limits"]
    print(f"\nmachine: {result['machine']}")
    print(f"model: {result['model']}, {result['items']} items of {result['mean_tokens']:.0f} tokens")
    print(f"limits: int8 MatMulInteger {limits['int8_matmulinteger_gops']:.0f} GOP/s, fp32 MatMul "
          f"{limits['fp32_matmul_gflops']:.0f} GFLOP/s (onnxruntime), torch fp32 GEMM "
          f"{limits['torch_fp32_gemm_gflops']:.0f} GFLOP/s")
    print(f"fidelity: {result['fidelity']}\nprofile of the served engine row: {result['profile']}\n")
    print("| row | items/s | p50 ms | p99 ms | x naive (a) | x eager (b) | model GFLOP/s | share of int8 limit |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| limit: int8 MatMulInteger 2048x384x1536 | | | | | | {limits['int8_matmulinteger_gops']:.0f} | 100% |")
    for r in result["rows"]:
        print(f"| {r['name']} | {r['items_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['vs_naive']:.1f} | {r['vs_eager']:.2f} | {r['model_gflops']:.1f} | "
              f"{100 * r['share_of_int8_limit']:.0f}% |")
    print()
    for key, value in result["ratios"].items():
        print(f"{key}: {value:.2f}")


if __name__ == "__main__":
    main()
