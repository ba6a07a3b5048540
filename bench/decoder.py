"""Benchmark: decoder reward models on mixed-length items, the engine against an OpenRLHF-style server.

    .venv/bin/python bench/decoder.py                         # CPU: the SmolLM2-135M RM, ~10 minutes on 2 cores
    python bench/decoder.py --device cuda --shape 1.5b        # a GPU: bf16, a ~1.5B Qwen2-shaped random RM

Items: (prompt, response) conversations from Rotten Tomatoes review text, rendered with the
model's chat template, from 64 to 4,096 tokens, long-tailed like real rollouts (log-normal).
All items arrive at once, one item per request (as OpenRLHF's trainer sends them).

Rows, in one process, on the same items:
- baseline: OpenRLHF serve_rm style: the Hugging Face model, fixed batches by count in arrival
  order, each padded to its longest item, run inside the request, one batch after another;
- engine: this service's engine (formatting, length-sorted dynamic batching under a token
  budget, the runtime `runtime: auto` picks: ONNX on CPU, torch bf16 + SDPA on CUDA);
- peak: the device's measured matrix-multiply rate (fp32 on CPU, bf16 on CUDA), same run.
Each row: items/s, tokens/s (real tokens), p50/p99 latency per item, model FLOP/s and its
share of the peak (matmul FLOPs of real tokens only; padding is not counted as work).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reward_service import model_store  # noqa: E402
from reward_service.config import BatchingSettings, LearnedRMBackendSettings  # noqa: E402
from reward_service.engine.model import ModelEngine  # noqa: E402
from reward_service.items import Item  # noqa: E402

SHAPES = {  # a ~1.5B Qwen2-shaped reward model (random weights) for the GPU row
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, max_position_embeddings=32768),
}


def smollm2_rm(folder: Path) -> Path:
    """rm-smollm2-rt if built, else SmolLM2-135M-Instruct with a fresh scalar head (same cost)."""
    built = model_store.builtin_path("rm-smollm2-rt")
    if model_store.is_built(built):
        return built
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainer_client.policy_models import smollm2_folder

    base = smollm2_folder()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def shaped_rm(folder: Path, shape: str, tokenizer_from: Path) -> Path:
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    config = Qwen2Config(vocab_size=len(tokenizer), num_labels=1, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False, **SHAPES[shape])
    Qwen2ForSequenceClassification(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_items(tokenizer, count: int, seed: int = 0) -> list[Item]:
    """Conversations whose rendered length is log-normal, clipped to 64..4096 tokens."""
    from reward_service.training import data

    rng = np.random.default_rng(seed)
    words = " ".join(r.text for r in data.load_reviews()[:20000]).split()
    targets = np.clip(rng.lognormal(np.log(500), 0.9, count), 64, 4096).astype(int)
    items = []
    for target in targets:
        start = int(rng.integers(0, len(words) - 8000))
        prompt = "Write a review of the film: " + " ".join(words[start:start + 12])
        response_words = max(8, int(target * 0.72) - 40)  # ~1.3 tokens per word, minus the template
        items.append(Item(prompt, " ".join(words[start + 12:start + 12 + response_words])))
    return items


def flops_per_item(config, tokens: int) -> float:
    """Forward matmul FLOPs for one sequence: projections and MLP per token, attention per pair."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = d * config.num_key_value_heads // config.num_attention_heads
    per_token = layers * 2 * (2 * d * d + 2 * d * kv + 3 * d * ff)
    return per_token * tokens + layers * 2 * 2 * tokens * tokens * d


def gemm_peak(device: str, dtype, seconds: float = 3.0, n: int = 2048) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
    _sync(device)
    return 2 * n ** 3 * runs / (time.perf_counter() - started)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def row(name: str, lengths: list[int], elapsed: float, latencies: list[float], flops: float, peak: float) -> dict:
    return {"name": name, "items_per_s": len(lengths) / elapsed, "tokens_per_s": sum(lengths) / elapsed,
            "p50_s": float(np.percentile(latencies, 50)), "p99_s": float(np.percentile(latencies, 99)),
            "model_gflops": flops / elapsed / 1e9, "share_of_peak": flops / elapsed / peak}


def baseline(folder: Path, token_ids: list[list[int]], batch: int, device: str, dtype) -> tuple[float, list[float]]:
    """OpenRLHF serve_rm style: fixed batches by count, in arrival order, padded to each batch's longest."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype).to(device).eval()
    pad = model.config.pad_token_id
    latencies, started = [], time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(token_ids), batch):
            chunk = token_ids[i:i + batch]
            width = max(map(len, chunk))
            ids = torch.tensor([row + [pad] * (width - len(row)) for row in chunk], device=device)
            mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in chunk], device=device)
            model(input_ids=ids, attention_mask=mask).logits.float().cpu()
            _sync(device)
            latencies += [time.perf_counter() - started] * len(chunk)
    return time.perf_counter() - started, latencies


def engine(folder: Path, items: list[Item], device: str, precision: str, budget: int) -> tuple[float, list[float], dict]:
    settings = LearnedRMBackendSettings(type="learned-rm", model=str(folder), device=device, precision=precision,
                                        batching=BatchingSettings(max_batch_size=64, max_batch_tokens=budget,
                                                                  max_wait_ms=5))
    served = ModelEngine("bench", folder, settings).load()

    async def run():
        await served.outputs(items[:1])  # warm-up

        async def one(item):
            await served.outputs([item])
            return time.perf_counter() - started

        started = time.perf_counter()
        latencies = await asyncio.gather(*(one(item) for item in items))
        elapsed = time.perf_counter() - started
        await served.close()
        return elapsed, list(latencies)

    elapsed, latencies = asyncio.run(run())
    return elapsed, latencies, served.describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--shape", default="smollm2", choices=["smollm2", *SHAPES])
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--baseline-batch", type=int, default=8)
    parser.add_argument("--budget", type=int, default=16384, help="engine: padded tokens per forward pass")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "decoder.json"))
    args = parser.parse_args()
    from transformers import AutoTokenizer

    scratch = Path(tempfile.mkdtemp(prefix="bench-decoder-"))
    folder = smollm2_rm(scratch / "smollm2")
    if args.shape != "smollm2":
        folder = shaped_rm(scratch / args.shape, args.shape, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    items = make_items(tokenizer, args.items)
    texts = [tokenizer.apply_chat_template(i.conversation(), tokenize=False) for i in items]
    token_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]  # the card's recipe
    lengths = [len(ids) for ids in token_ids]
    print(f"{len(items)} items, tokens: mean {np.mean(lengths):.0f}, median {np.median(lengths):.0f}, "
          f"min {min(lengths)}, max {max(lengths)}")

    cuda = args.device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    flops = sum(flops_per_item(config, n) for n in lengths)
    peak = gemm_peak(args.device, dtype)
    base_s, base_lat = baseline(folder, token_ids, args.baseline_batch, args.device, dtype)
    eng_s, eng_lat, described = engine(folder, items, args.device, "bf16" if cuda else "auto", args.budget)
    rows = [row(f"baseline: HF, batches of {args.baseline_batch} by count, padded", lengths, base_s, base_lat,
                flops, peak),
            row(f"engine: {described.get('runtime')} {described.get('precision')}, token budget {args.budget}",
                lengths, eng_s, eng_lat, flops, peak)]
    result = {"machine": f"{os.cpu_count()} cores {platform.processor() or platform.machine()}; "
                         f"{torch.cuda.get_device_name() if cuda else 'CPU'}; torch {torch.__version__}",
              "date": time.strftime("%Y-%m-%d %H:%M"), "model": model_store.version(folder), "shape": args.shape,
              "items": len(items), "tokens": {"mean": float(np.mean(lengths)), "max": max(lengths)},
              "peak_gflops": peak / 1e9, "engine": described, "rows": rows,
              "engine_vs_baseline": rows[1]["items_per_s"] / rows[0]["items_per_s"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"{result['machine']}; model {result['model']}; peak {peak / 1e9:.0f} GFLOP/s ({dtype})")
    print(f"{'row':58} {'items/s':>8} {'tok/s':>8} {'p50 s':>7} {'p99 s':>7} {'GFLOP/s':>8} {'of peak':>7}")
    for r in rows:
        print(f"{r['name']:58} {r['items_per_s']:8.2f} {r['tokens_per_s']:8.0f} {r['p50_s']:7.2f} {r['p99_s']:7.2f} "
              f"{r['model_gflops']:8.1f} {r['share_of_peak']:7.1%}")
    print(f"engine vs baseline: {result['engine_vs_baseline']:.2f}x")


if __name__ == "__main__":
    main()
