"""The engine: ONNX matches PyTorch, batches go back to the right request, limits hold."""

import asyncio

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from reward_service.config import BatchingSettings, SentimentBackendSettings
from reward_service.engine import export
from reward_service.engine.batcher import DynamicBatcher
from reward_service.engine.model import ModelEngine
from reward_service.errors import DeadlineExceeded, Overloaded
from reward_service.items import Item

BERT_INPUTS = ["input_ids", "token_type_ids", "attention_mask"]  # what the tiny BERT's tokenizer gives
TEXTS = ["a wonderful, moving film", "dull", "I walked out after twenty minutes of this nonsense", "",
         "The cast is great but the script is not " * 5]


def torch_logits(model_dir, texts, max_length=64):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        rows = [model(**tokenizer(t, truncation=True, max_length=max_length, return_tensors="pt")).logits[0].numpy()
                for t in texts]
    return np.stack(rows)


def logits(engine, texts):
    return asyncio.run(engine.outputs([Item("", text) for text in texts])).values


def engine_for(model_dir, runtime, precision="fp32", **options):
    settings = SentimentBackendSettings(type="sentiment", model=str(model_dir), runtime=runtime, max_length=64,
                                        precision=precision, **options)
    return ModelEngine("test", model_dir, settings).load()


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_engine_matches_pytorch_one_by_one(tiny_model, runtime):
    engine = engine_for(tiny_model, runtime)
    got = logits(engine, TEXTS)
    np.testing.assert_allclose(got, torch_logits(tiny_model, TEXTS), atol=1e-4, rtol=1e-4)


def test_int8_is_accepted_only_above_the_fidelity_threshold(tiny_model):
    accepted = engine_for(tiny_model, "onnx", precision="int8", int8_min_pearson=0.5)
    described = accepted.describe()
    assert described["precision"] == "int8" and accepted.version.endswith("+int8-fused")
    check = described["int8_fidelity_vs_fp32"]
    assert 0.5 <= check["pearson"] <= 1 and check["max_abs_diff"] >= 0 and check["samples"] > 20
    got = logits(accepted, TEXTS)
    assert np.corrcoef(got.ravel(), torch_logits(tiny_model, TEXTS).ravel())[0, 1] > 0.5

    refused = engine_for(tiny_model, "onnx", precision="int8", int8_min_pearson=1.0)
    described = refused.describe()
    if check["pearson"] < 1.0:
        assert described["precision"] == "fp32" and "int8 refused" in described["notes"][0]
        assert "+" not in refused.version
        np.testing.assert_allclose(logits(refused, TEXTS), torch_logits(tiny_model, TEXTS), atol=1e-4)
    meta = export.read_meta(export.export_onnx(tiny_model, BERT_INPUTS, 0).parent)
    assert meta[f"fidelity_model.fused.{export.INT8_VARIANT}"] == check


def test_fused_graph_serves_the_reference_outputs(tiny_model):
    """An encoder onnxruntime's optimizer knows serves the fused graph (one Attention op per
    layer), with the same outputs as PyTorch one item at a time, in mixed-length batches."""
    engine = engine_for(tiny_model, "onnx")
    described = engine.describe()
    layers = AutoModelForSequenceClassification.from_pretrained(tiny_model).config.num_hidden_layers
    assert described["graph_variant"] == "fused" and described["graph"].endswith("model.fused.onnx")
    assert described["fused_operators"]["Attention"] == layers
    check = described["fused_fidelity_vs_reference"]
    assert check["pearson"] >= 0.99999 and check["max_abs_diff"] <= 1e-3
    np.testing.assert_allclose(logits(engine, TEXTS), torch_logits(tiny_model, TEXTS), atol=1e-4, rtol=1e-4)
    assert engine.version == engine_for(tiny_model, "onnx", onnx_graph="reference").version  # fp32: same values


def test_reference_graph_by_config_and_when_the_fused_one_differs(tiny_model, monkeypatch):
    reference = engine_for(tiny_model, "onnx", onnx_graph="reference").describe()
    assert reference["graph_variant"] == "reference" and reference["graph"].endswith("/model.onnx")
    assert reference["notes"] == []

    from reward_service.engine import runtime

    monkeypatch.setattr(runtime, "FUSED_MAX_ABS_DIFF", -1.0)  # no fused graph can pass now
    refused = engine_for(tiny_model, "onnx")
    described = refused.describe()
    assert described["graph_variant"] == "reference" and described["graph"].endswith("/model.onnx")
    assert "fused graph not used" in described["notes"][0] and "differs from the reference" in described["notes"][0]
    np.testing.assert_allclose(logits(refused, TEXTS), torch_logits(tiny_model, TEXTS), atol=1e-4, rtol=1e-4)


def test_cpu_machine_says_it_serves_on_cpu_when_cuda_is_asked(tiny_model):
    engine = engine_for(tiny_model, "onnx", precision="fp16", device="cuda")
    described = engine.describe()
    assert described["provider"] == "CPUExecutionProvider" and described["precision"] == "fp32"
    assert any("CUDA" in note or "cuda" in note for note in described["notes"])


def test_onnx_export_is_cached_by_content(tiny_model, tmp_path):
    first = export.export_onnx(tiny_model, BERT_INPUTS, 0)
    stamp = first.stat().st_mtime_ns
    assert export.export_onnx(tiny_model, BERT_INPUTS, 0) == first and first.stat().st_mtime_ns == stamp
    assert export.read_meta(first.parent)["version"].startswith("tiny-sentiment")

    from tests.conftest import make_tiny_classifier

    other = make_tiny_classifier(tmp_path / "other", seed=1)
    assert export.export_onnx(other, BERT_INPUTS, 0) != first


def echo_infer(rows):
    """Each row's output is its own first token id: easy to check who got what."""
    return np.array([[row[0], len(row)] for row in rows], dtype=np.float32)


async def _concurrent_requests():
    batcher = DynamicBatcher(echo_infer, BatchingSettings(max_batch_size=8, max_batch_tokens=64, max_wait_ms=5))
    requests = [[[r * 100 + i] * (1 + (r + i) % 7) for i in range(1 + r % 5)] for r in range(40)]
    results = await asyncio.gather(*(batcher.submit(rows) for rows in requests))
    await batcher.close()
    return batcher, requests, results


def test_batcher_returns_each_requests_rows_in_order():
    batcher, requests, results = asyncio.run(_concurrent_requests())
    for rows, result in zip(requests, results):
        assert result[:, 0].tolist() == [row[0] for row in rows]
        assert result[:, 1].tolist() == [len(row) for row in rows]
    total = sum(len(r) for r in requests)
    assert batcher.stats.items == total
    assert batcher.stats.batches < total  # items really were batched together


async def _batches_of(lengths, settings):
    seen = []

    def infer(rows):
        seen.append([len(row) for row in rows])
        return echo_infer(rows)

    batcher = DynamicBatcher(infer, settings)
    await batcher.submit([[1] * n for n in lengths])
    await batcher.close()
    return seen


def test_batcher_cuts_batches_by_size_and_token_budget():
    lengths = (9, 2, 3, 10, 1, 2, 2, 2)
    batches = asyncio.run(_batches_of(lengths, BatchingSettings(max_batch_size=4, max_batch_tokens=20)))
    for batch in batches:
        assert len(batch) <= 4 and max(batch) * len(batch) <= 20
        assert batch == sorted(batch)
    assert sorted(n for batch in batches for n in batch) == sorted(lengths)


async def _overload():
    batcher = DynamicBatcher(echo_infer, BatchingSettings(max_queue_items=4, max_wait_ms=50))
    first = asyncio.ensure_future(batcher.submit([[1]] * 3))
    await asyncio.sleep(0)
    try:
        await batcher.submit([[1]] * 2)
        refusal = None
    except Overloaded as exc:
        refusal = exc
    await first
    await batcher.close()
    return batcher, refusal


def test_full_queue_refuses_with_retry_after():
    batcher, refusal = asyncio.run(_overload())
    assert refusal is not None and refusal.retry_after_s
    assert batcher.stats.rejected_requests == 1


async def _expired_and_cancelled():
    ran = []

    def infer(rows):
        ran.extend(row[0] for row in rows)
        return np.zeros((len(rows), 1), dtype=np.float32)

    batcher = DynamicBatcher(infer, BatchingSettings(max_wait_ms=100))
    loop = asyncio.get_running_loop()
    expired = asyncio.ensure_future(batcher.submit([[7], [7]], deadline=loop.time() + 0.01))
    cancelled = asyncio.ensure_future(batcher.submit([[8]]))
    kept = asyncio.ensure_future(batcher.submit([[9]]))
    await asyncio.sleep(0.02)
    cancelled.cancel()
    expired_error = (await asyncio.gather(expired, return_exceptions=True))[0]
    await kept
    await batcher.close()
    return ran, batcher, expired_error


def test_expired_and_cancelled_requests_are_dropped_before_inference():
    ran, batcher, expired_error = asyncio.run(_expired_and_cancelled())
    assert isinstance(expired_error, DeadlineExceeded)
    assert ran == [9]
    assert batcher.stats.dropped_items == 3


async def _fails_once_then_serves():
    calls = []

    def infer(rows):
        calls.append(rows)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return echo_infer(rows)

    batcher = DynamicBatcher(infer, BatchingSettings(max_wait_ms=0))
    first = (await asyncio.gather(batcher.submit([[1]]), return_exceptions=True))[0]
    second = await batcher.submit([[5]])
    await batcher.close()
    return first, second


def test_a_failing_batch_fails_its_requests_and_the_batcher_keeps_serving():
    first, second = asyncio.run(_fails_once_then_serves())
    assert isinstance(first, RuntimeError) and "exploded" in str(first)
    assert second[0, 0] == 5


def test_model_version_changes_with_any_weight_or_tokenizer_file(tiny_model, tmp_path):
    import shutil

    from reward_service import model_store

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    base = model_store.content_hash(copy)
    assert base == model_store.content_hash(tiny_model)
    (copy / "merges.txt").write_text("a b\n")  # another tokenizer format appears
    with_merges = model_store.content_hash(copy)
    (copy / "model-00002-of-00002.safetensors").write_bytes(b"shard")
    with_shard = model_store.content_hash(copy)
    assert len({base, with_merges, with_shard}) == 3
    (copy / "training_curve.png").write_bytes(b"not a model file")
    assert model_store.content_hash(copy) == with_shard  # a plot does not change the reward


def test_batch_dependence_measures_how_far_batch_mates_move_an_items_outputs():
    from reward_service.engine import fidelity

    feeds = {"input_ids": np.array([[5, 6, 7], [8, 9, 0]]), "attention_mask": np.array([[1, 1, 1], [1, 1, 0]])}

    def independent(arrays):  # each row's own (unpadded) token sum
        return (arrays["input_ids"] * arrays["attention_mask"]).sum(axis=1, keepdims=True).astype(np.float32)

    def shared_scale(arrays):  # as dynamic int8 does: one scale for the whole batch
        return independent(arrays) / arrays["input_ids"].max()

    assert fidelity.batch_dependence(independent, feeds) == 0.0
    moved = fidelity.batch_dependence(shared_scale, feeds)
    assert moved == pytest.approx(max(abs(18 / 9 - 18 / 7), abs(17 / 9 - 17 / 9)), abs=1e-6)


def test_int8_check_records_the_batch_dependence(tiny_model):
    """Recorded beside Pearson in /v1/backends: int8 moves an item with its batch-mates, fp32 only by rounding."""
    from reward_service.engine import fidelity, runtime
    from reward_service.engine.tokenization import pad_batch

    engine = engine_for(tiny_model, "onnx", precision="int8", int8_min_pearson=0.0)
    moved = engine.describe()["int8_fidelity_vs_fp32"]["batch_dependence_max_abs_diff"]
    rows, _, _ = engine.encode([Item("", text) for text in fidelity.sample_texts()], "left")
    feeds = pad_batch(rows, engine.pad.id, engine.input_names)
    assert fidelity.batch_dependence(engine.runtime.run, feeds) == pytest.approx(moved, abs=1e-6)
    fp32 = runtime.OnnxRuntime(engine_for(tiny_model, "onnx").describe()["graph"])
    assert fidelity.batch_dependence(fp32.run, feeds) < 1e-4 < moved
    assert any("batch-mates" in note for note in engine.describe()["notes"])

    strict = engine_for(tiny_model, "onnx", precision="int8", int8_min_pearson=0.0,
                        int8_max_batch_dependence=moved / 2).describe()
    assert strict["precision"] == "fp32" and "over int8_max_batch_dependence" in strict["notes"][0]


@pytest.mark.parametrize("workers", [1, 2])
def test_batcher_runs_up_to_workers_batches_at_once(workers):
    import threading

    running, most, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def slow_infer(rows):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(0.3)  # long enough for another worker to start, if there is one
        with lock:
            running[0] -= 1
        return echo_infer(rows)

    async def scenario():
        batcher = DynamicBatcher(slow_infer, BatchingSettings(max_batch_size=2, max_wait_ms=0, workers=workers))
        requests = [[[r * 10 + i] for i in range(2)] for r in range(4)]  # 4 requests, one batch each
        try:
            return requests, await asyncio.gather(*(batcher.submit(rows) for rows in requests)), batcher
        finally:
            await batcher.close()

    requests, results, batcher = asyncio.run(scenario())
    assert most[0] == workers
    for rows, result in zip(requests, results):
        assert result[:, 0].tolist() == [row[0] for row in rows]
    assert batcher.queued_items == 0 and batcher.stats.batches == 4


def test_batcher_runs_the_oldest_item_first_and_late_arrivals_join_later_batches():
    """Batches are cut when a worker is free: the one holding the oldest item goes first (a long
    item is not starved by a stream of short ones), and what arrives meanwhile joins the rest."""
    import threading

    seen: list[list[int]] = []
    busy = threading.Event()

    def infer(rows):
        if not seen:
            busy.wait(5)  # the first batch holds the only worker until everything below is queued
        seen.append([len(row) for row in rows])
        return echo_infer(rows)

    async def scenario():
        batcher = DynamicBatcher(infer, BatchingSettings(max_batch_size=4, max_batch_tokens=60, max_wait_ms=0,
                                                         workers=1))
        try:
            blocker = asyncio.ensure_future(batcher.submit([[99] * 3]))
            await asyncio.sleep(0.05)  # running now
            first = asyncio.ensure_future(batcher.submit([[1] * 50]))  # the oldest waiting, and the longest
            await asyncio.sleep(0)
            shorts = [asyncio.ensure_future(batcher.submit([[i] * 2])) for i in range(10)]
            await asyncio.sleep(0.05)  # all queued behind the blocker
            busy.set()
            return await blocker, await first, await asyncio.gather(*shorts)
        finally:
            await batcher.close()

    _, long_result, short_results = asyncio.run(scenario())
    assert seen[0] == [3] and seen[1] == [50] and long_result[:, 1].tolist() == [50]
    assert [r[:, 0].tolist() for r in short_results] == [[i] for i in range(10)]
    assert sum(len(batch) for batch in seen[2:]) == 10 and max(len(batch) for batch in seen[2:]) == 4


def test_closing_the_batcher_answers_requests_whose_batch_is_running():
    import threading

    release = threading.Event()

    def stuck_infer(rows):
        release.wait(5)
        return echo_infer(rows)

    async def scenario():
        batcher = DynamicBatcher(stuck_infer, BatchingSettings(max_wait_ms=0, workers=1))
        running = asyncio.ensure_future(batcher.submit([[1, 2]]))
        queued = asyncio.ensure_future(batcher.submit([[3]]))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(batcher.close(), 2)
        release.set()
        return await asyncio.gather(running, queued, return_exceptions=True)

    for outcome in asyncio.run(scenario()):
        assert isinstance(outcome, DeadlineExceeded) and "shutting down" in str(outcome)


def test_a_fused_export_that_breaks_is_a_note_and_the_reference_serves(tiny_model, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("optimizer exploded")

    monkeypatch.setattr(export, "fused_graph", broken)
    engine = engine_for(tiny_model, "onnx")
    described = engine.describe()
    assert described["graph_variant"] == "reference" and "fusion_failed" not in described
    assert any("fused export failed (RuntimeError: optimizer exploded)" in note for note in described["notes"])
    np.testing.assert_allclose(logits(engine, TEXTS), torch_logits(tiny_model, TEXTS), atol=1e-4, rtol=1e-4)
