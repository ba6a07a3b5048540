"""Which runtime serves a model, and with what: torch in bf16 (or fp16) when CUDA is there, ONNX on
CPU with external data for big graphs; and the batcher keeps an over-budget item alone.

No GPU is needed: CUDA is faked (torch reports one, and moves to it stay on the CPU), so what is
checked is the choice and what /v1/backends says about it, and that the chosen dtype really serves.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from reward_service import config as config_module
from reward_service.app import create_app
from reward_service.config import BatchingSettings
from reward_service.engine import export, runtime
from reward_service.engine.batcher import DynamicBatcher
from tests.tiny_models import make_tiny_llama_rm

CONVERSATIONS = [
    [{"role": "user", "content": "Was the movie good?"}, {"role": "assistant", "content": "Yes, moving and funny."}],
    [{"role": "user", "content": "And the ending?"},
     {"role": "assistant", "content": "A little rushed, but earned, and the last shot stays with you."}],
]


def card_recipe(folder, conversation, dtype=torch.float32) -> float:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype).eval()
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    with torch.no_grad():
        return model(**tokenizer(text, add_special_tokens=False, return_tensors="pt")).logits[0][0].float().item()


def client_for(backend: dict) -> TestClient:
    settings = config_module.parse(json.dumps({"default_backend": "rm", "backends": {"rm": backend}}), "test", {})
    return TestClient(create_app(settings, load_in_background=False))


def serve(backend: dict) -> tuple[dict, dict]:
    """Score CONVERSATIONS; return the reply and the backend's /v1/backends entry."""
    with client_for(backend) as c:
        reply = c.post("/score", json={"items": [{"messages": conv} for conv in CONVERSATIONS]})
        assert reply.status_code == 200, reply.text
        described = {b["name"]: b for b in c.get("/v1/backends").json()["backends"]}["rm"]
    return reply.json(), described


@pytest.fixture(scope="module")
def decoder_rm(tmp_path_factory, smollm2_dir):
    return make_tiny_llama_rm(tmp_path_factory.mktemp("decoder-rm"), smollm2_dir)


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch 'sees' a GPU; tensors and modules sent to it stay on the CPU. Returns a setter for
    whether the fake GPU has bf16."""
    def on_cpu(value):
        if isinstance(value, (str, torch.device)) and torch.device(value).type == "cuda":
            return torch.device("cpu")
        return value

    def staying(real):
        def to(self, *args, **kwargs):
            args = tuple(on_cpu(a) for a in args)
            if "device" in kwargs:
                kwargs["device"] = on_cpu(kwargs["device"])
            return real(self, *args, **kwargs)
        return to

    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.Tensor, "to", staying(torch.Tensor.to))
    monkeypatch.setattr(torch.nn.Module, "to", staying(torch.nn.Module.to))
    bf16 = {"supported": True}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16["supported"])
    return lambda supported: bf16.update(supported=supported)


def test_auto_on_cuda_picks_torch_in_bf16_with_sdpa_and_says_so(decoder_rm, fake_cuda):
    reply, described = serve({"type": "learned-rm", "model": str(decoder_rm)})  # runtime, device, precision: auto
    details = described["details"]
    assert (details["runtime"], details["device"], details["precision"]) == ("torch", "cuda", "bf16")
    assert details["attention"] == "sdpa" and details["notes"] == []
    assert reply["model"].endswith("+bf16") and described["model"] == reply["model"]
    expected = [card_recipe(decoder_rm, conv, torch.bfloat16) for conv in CONVERSATIONS]
    assert reply["scores"] == pytest.approx(expected, abs=2e-2)  # bf16 on each side: batching may round apart


def test_a_gpu_without_bf16_serves_fp16_and_says_why(decoder_rm, fake_cuda):
    fake_cuda(False)
    reply, described = serve({"type": "learned-rm", "model": str(decoder_rm)})
    details = described["details"]
    assert (details["runtime"], details["device"], details["precision"]) == ("torch", "cuda", "fp16")
    assert details["notes"] == ["this GPU has no bf16; serving fp16"]
    assert reply["model"].endswith("+fp16")
    expected = [card_recipe(decoder_rm, conv) for conv in CONVERSATIONS]
    assert reply["scores"] == pytest.approx(expected, abs=2e-2)


def test_fp16_by_config_on_cuda_and_onnx_asked_on_cuda_is_explained(decoder_rm, fake_cuda):
    _, described = serve({"type": "learned-rm", "model": str(decoder_rm), "runtime": "torch", "precision": "fp16"})
    assert described["details"]["precision"] == "fp16" and described["details"]["device"] == "cuda"
    _, described = serve({"type": "learned-rm", "model": str(decoder_rm), "runtime": "onnx", "precision": "fp32"})
    details = described["details"]
    assert (details["runtime"], details["device"]) == ("onnx", "cpu")
    assert any("ONNX is the CPU path" in note for note in details["notes"])


def test_without_cuda_auto_serves_onnx_on_cpu(decoder_rm, monkeypatch):
    monkeypatch.setattr(runtime, "cuda_available", lambda: False)
    _, described = serve({"type": "learned-rm", "model": str(decoder_rm), "precision": "fp32"})
    assert (described["details"]["runtime"], described["details"]["device"]) == ("onnx", "cpu")


def test_external_data_export_scores_as_torch_and_skips_int8_with_a_note(tmp_path, smollm2_dir, monkeypatch):
    monkeypatch.setenv("REWARD_SERVICE_HOME", str(tmp_path / "home"))  # a fresh export cache
    monkeypatch.setattr(export, "INLINE_LIMIT_BYTES", 0)  # every model counts as over protobuf's limit
    folder = make_tiny_llama_rm(tmp_path / "rm", smollm2_dir)
    reply, described = serve({"type": "learned-rm", "model": str(folder), "runtime": "onnx"})  # precision: auto
    details = described["details"]
    graph = tmp_path / "home" / "onnx"
    [folder_of_graph] = [path.parent for path in graph.glob("*/model.onnx")]
    assert list(folder_of_graph.glob("*.data")), "no external data written"
    assert details["graph"] == str(folder_of_graph / "model.onnx")
    assert details["runtime"] == "onnx" and details["precision"] == "fp32"
    assert details["notes"] == ["int8 not attempted: the graph is over 2 GB (external data); serving fp32"]
    assert not list(folder_of_graph.glob("*int8*"))
    assert reply["scores"] == pytest.approx([card_recipe(folder, conv) for conv in CONVERSATIONS], abs=1e-4)


def test_an_item_longer_than_the_token_budget_runs_alone_and_the_rest_still_batch():
    seen: list[list[int]] = []

    def infer(rows):
        seen.append([len(row) for row in rows])
        return np.array([[row[0], len(row)] for row in rows], dtype=np.float32)

    async def scenario():
        batcher = DynamicBatcher(infer, BatchingSettings(max_batch_size=8, max_batch_tokens=20, max_wait_ms=5))
        rows = [[i] * n for i, n in enumerate([3, 50, 2, 4, 35, 1])]
        try:
            return rows, await batcher.submit(rows)
        finally:
            await batcher.close()

    rows, result = asyncio.run(scenario())
    assert result[:, 0].tolist() == list(range(len(rows))) and result[:, 1].tolist() == [len(r) for r in rows]
    assert [50] in seen and [35] in seen  # each over the budget alone, not refused, not cut
    assert sorted(seen, key=len)[-1] == [1, 2, 3, 4]  # the short ones shared one padded batch
    assert len(seen) == 3
