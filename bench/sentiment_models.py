"""Benchmark: the two builtin sentiment models side by side, as the `sentiment` backend serves them.

    .venv/bin/python bench/sentiment_models.py     # both models must be built; a few minutes on 2 cores

The default `sentiment-minilm-rt` (the engine benchmark's model) against the opt-in
`sentiment-smollm2-rt`, in one process, on the same Rotten Tomatoes reviews scored as plain
responses (use_prompt: false, as served): the default config's settings with the model swapped in
(ONNX on CPU, int8 where it passes the fidelity check). Rows: items/s with every request of 32
submitted at once, p50/p99 latency of one-item requests sent one after another, the precision and
graph the engine chose, and the accuracies each model card recorded (Rotten Tomatoes held out, the
hard reviews). Writes bench/results/sentiment_models.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import REQUEST_ITEMS, machine, percentiles  # noqa: E402
from reward_service import model_store  # noqa: E402
from reward_service.engine.model import ModelEngine  # noqa: E402
from reward_service.items import Item  # noqa: E402
from reward_service.training import data  # noqa: E402
from reward_service.training.hard_reviews import default_backend_settings  # noqa: E402

MODELS = ("sentiment-minilm-rt", "sentiment-smollm2-rt")


def reviews(count: int) -> list[str]:
    texts = [r.text for r in data.load_reviews()]
    return texts[:count]


def measure(name: str, texts: list[str], single: int) -> dict:
    folder = model_store.builtin_path(name)
    if not model_store.is_built(folder):
        raise SystemExit(f"{name} is not built: reward-service models build {model_store.BUILTINS[name].build_key}")
    settings = default_backend_settings("sentiment").model_copy(update={"model": str(folder)})
    engine = ModelEngine("bench", folder, settings).load()
    described = engine.describe()

    async def run():
        await engine.outputs([Item("", texts[0])])  # warm-up
        chunks = [texts[i: i + REQUEST_ITEMS] for i in range(0, len(texts), REQUEST_ITEMS)]
        started = time.perf_counter()
        await asyncio.gather(*(engine.outputs([Item("", t) for t in chunk]) for chunk in chunks))
        batched_s = time.perf_counter() - started
        latencies = []
        for text in texts[:single]:
            t = time.perf_counter()
            await engine.outputs([Item("", text)])
            latencies.append(time.perf_counter() - t)
        await engine.close()
        return batched_s, latencies

    batched_s, latencies = asyncio.run(run())
    p50, p99 = percentiles(latencies)
    card = model_store.read_card(folder)
    return {
        "model": engine.version,
        "precision": described["precision"], "graph_variant": described.get("graph_variant"),
        "items_per_s": round(len(texts) / batched_s, 1), "single_item_p50_ms": round(p50, 1),
        "single_item_p99_ms": round(p99, 1),
        "held_out_accuracy": card.get("held_out_accuracy"),
        "hard_reviews_accuracy_fp32": (card.get("hard_reviews") or {}).get("accuracy"),
        "build_seconds": card.get("build_seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--single", type=int, default=100, help="one-item requests for the latency row")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "sentiment_models.json"))
    args = parser.parse_args()
    texts = reviews(args.items)
    rows = [measure(name, texts, args.single) for name in MODELS]
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "items": len(texts), "request_items": REQUEST_ITEMS, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['machine']}; {len(texts)} reviews, requests of {REQUEST_ITEMS} at once")
    print("| model | served as | items/s | single item p50 / p99 ms | RT held out | hard reviews (fp32) | build s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| `{r['model']}` | {r['precision']}, {r['graph_variant']} | {r['items_per_s']} | "
              f"{r['single_item_p50_ms']} / {r['single_item_p99_ms']} | {r['held_out_accuracy']} | "
              f"{r['hard_reviews_accuracy_fp32']} | {r['build_seconds']} |")
    slow, fast = rows[1]["items_per_s"], rows[0]["items_per_s"]
    print(f"sentiment-smollm2-rt scores {slow / fast:.2f}x sentiment-minilm-rt's items/s")


if __name__ == "__main__":
    main()
