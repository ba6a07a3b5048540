"""Load test: N concurrent clients for T seconds against a real service process, loopback only.

Each client POSTs /score batches back to back (a 429 is honoured: it waits Retry-After
and goes on). Reports requests and items done, every non-200 by status (429s are the
deliberate kind), latency percentiles, and the service's peak resident memory (VmHWM).

    .venv/bin/python bench/load.py --clients 64 --seconds 60 --backend sentiment
    .venv/bin/python bench/load.py --config my.yaml --backend rm --items 16

Without --config it serves the builtin `sentiment` model (built if missing) and `lexicon`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

WORDS = ("the movie was a great fun dull boring lovely story with awful acting and wonderful music "
         "plot twist ending cast script scene hated loved every minute of it").split()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(config: Path, env: dict | None = None, ready_timeout_s: float = 900, port: int | None = None,
                  keep_output: bool = False) -> tuple[subprocess.Popen, str]:
    """`reward-service serve` in a child process, returned once /readyz is 200. With
    `keep_output`, its output is piped (and shown if it exits before it is ready)."""
    port = port or free_port()
    output = subprocess.PIPE if keep_output else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "reward_service", "serve", "--config", str(config), "--port", str(port),
         "--log-level", "warning"],
        env=dict(os.environ, **(env or {})), stdout=output, stderr=subprocess.STDOUT if keep_output else output,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + ready_timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            said = f":\n{process.stdout.read()}" if keep_output else ""
            raise RuntimeError(f"service exited with {process.returncode}{said}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("service not ready in time")


def peak_rss_mib(pid: int, field: str = "VmHWM") -> float:
    """The process's peak resident set size (VmHWM; VmRSS: the current one), Linux only."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _batch(rng: random.Random, items: int) -> list[dict]:
    return [{"prompt": "The movie was", "response": " " + " ".join(rng.choices(WORDS, k=rng.randint(4, 40)))}
            for _ in range(items)]


async def _client(http: httpx.AsyncClient, stop_at: float, backend: str | None, items: int, seed: int,
                  latencies: list, statuses: dict) -> None:
    rng = random.Random(seed)
    while time.perf_counter() < stop_at:
        body = {"items": _batch(rng, items), "timeout_s": 30}
        if backend:
            body["backend"] = backend
        started = time.perf_counter()
        try:
            response = await http.post("/score", json=body)
            status = response.status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
            response = None
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            latencies.append(time.perf_counter() - started)
            if len(response.json()["scores"]) != items:
                statuses["wrong_count"] = statuses.get("wrong_count", 0) + 1
        elif status == 429:
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))


async def run_load(url: str, clients: int, seconds: float, backend: str | None = None, items: int = 8,
                   api_key: str | None = None) -> dict:
    latencies: list[float] = []
    statuses: dict = {}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(_client(http, stop_at, backend, items, i, latencies, statuses) for i in range(clients)))
        elapsed = time.perf_counter() - started
    ok = statuses.get(200, 0)
    lat = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return {
        "clients": clients, "seconds": round(elapsed, 1), "items_per_request": items, "backend": backend,
        "requests_ok": ok, "items_per_s": round(ok * items / elapsed, 1),
        "rejected_429": statuses.get(429, 0),
        "errors": {str(k): v for k, v in statuses.items() if k not in (200, 429)},
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                       "p99": round(float(np.percentile(lat, 99)), 1), "max": round(float(np.max(lat)), 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="service config (default: builtin sentiment + lexicon)")
    parser.add_argument("--backend", default="sentiment")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--items", type=int, default=8, help="items per request")
    parser.add_argument("--max-concurrent", type=int, help="server.max_concurrent_requests (default config only)")
    parser.add_argument("--output", default="bench/results/load-latest.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = Path(args.config) if args.config else Path(folder) / "load.yaml"
        if not args.config:
            server = f"server: {{max_concurrent_requests: {args.max_concurrent}}}\n" if args.max_concurrent else ""
            config.write_text(server + "default_backend: sentiment\nbackends:\n"
                              "  sentiment: {type: sentiment, model: sentiment-minilm-rt}\n"
                              "  lexicon: {type: lexicon}\n")
        process, url = start_service(config)
        try:
            started_rss = peak_rss_mib(process.pid, "VmRSS")
            start_peak = peak_rss_mib(process.pid)
            result = asyncio.run(run_load(url, args.clients, args.seconds, args.backend, args.items,
                                          os.environ.get("REWARD_SERVICE_API_KEY")))
            result["service_rss_mib"] = {
                "peak_during_start": round(start_peak),  # loading, ONNX export, int8 fidelity check
                "after_start": round(started_rss),
                "after_load": round(peak_rss_mib(process.pid, "VmRSS")),
                "peak_overall": round(peak_rss_mib(process.pid)),
            }
            key = os.environ.get("REWARD_SERVICE_API_KEY")
            listing = httpx.get(f"{url}/v1/backends", timeout=5,
                                headers={"Authorization": f"Bearer {key}"} if key else {}).json()
            result["model"] = {b["name"]: b["model"] for b in listing["backends"]}.get(args.backend)
        finally:
            process.terminate()
            process.wait(30)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
