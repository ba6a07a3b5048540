"""ONNX export of Hugging Face sequence-classification folders, cached by content.

The cache key is a hash of the model's files plus the export settings, so a
second start reuses the graph, and a retrained model gets a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from reward_service import model_store

log = logging.getLogger(__name__)

OPSET = 18
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
EXPORT_VERSION = 1  # bump when the export code changes what it writes


def cache_dir() -> Path:
    return model_store.home() / "onnx"


def export_key(model_dir: Path) -> str:
    settings = {"opset": OPSET, "inputs": INPUT_NAMES, "export_version": EXPORT_VERSION}
    digest = hashlib.sha256(model_store.content_hash(model_dir).encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _export(model_dir: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True).eval()

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).logits

    # The example must contain padding: with an all-ones mask transformers skips
    # masking entirely, and the traced graph would ignore attention_mask.
    ids = torch.full((2, 8), 100, dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    mask[1, 5:] = 0
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    torch.onnx.export(
        LogitsOnly(model).eval(),
        (ids, mask, torch.zeros_like(ids)),
        str(target),
        input_names=list(INPUT_NAMES),
        output_names=["logits"],
        dynamic_shapes={name: {0: batch, 1: seq} for name in INPUT_NAMES},
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
    )


def export_onnx(model_dir: Path) -> Path:
    """Return the fp32 ONNX graph for `model_dir`, exporting it on first use."""
    folder = cache_dir() / export_key(model_dir)
    graph = folder / "model.onnx"
    if graph.is_file():
        log.info("reusing cached ONNX export %s", graph)
        return graph
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".model.onnx.{os.getpid()}"
    log.info("exporting %s to ONNX (cached in %s)", model_dir, folder)
    _export(model_dir, staging)
    staging.replace(graph)  # atomic: a concurrent start never reads half a file
    write_meta(folder, {"source": str(model_dir), "version": model_store.version(model_dir), "opset": OPSET})
    return graph


def read_meta(folder: Path) -> dict:
    path = folder / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_meta(folder: Path, update: dict) -> None:
    meta = read_meta(folder) | update
    tmp = folder / f".meta.json.{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(folder / "meta.json")


def quantize_int8(fp32_graph: Path) -> Path:
    """Dynamic int8 weights (activations quantised at run time), cached beside fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = fp32_graph.with_name("model.int8.onnx")
    if target.is_file():
        return target
    staging = fp32_graph.with_name(f".model.int8.onnx.{os.getpid()}")
    quantize_dynamic(str(fp32_graph), str(staging), weight_type=QuantType.QInt8)
    staging.replace(target)
    return target


def fidelity(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """How closely a cheaper graph tracks fp32 on the same inputs (all output columns)."""
    a, b = reference.astype(np.float64).ravel(), candidate.astype(np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        pearson = 1.0 if np.allclose(a, b) else 0.0
    else:
        pearson = float(np.corrcoef(a, b)[0, 1])
    return {"pearson": round(pearson, 6), "max_abs_diff": round(float(np.abs(a - b).max()), 6), "samples": int(len(reference))}


def clear_cache() -> None:
    shutil.rmtree(cache_dir(), ignore_errors=True)
