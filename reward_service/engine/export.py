"""ONNX export of Hugging Face sequence-classification folders, cached by content.

The cache key is a hash of the model's files plus the export settings, so a
second start reuses the graph, and a retrained model gets a fresh one.

Two fp32 graphs can come out of one folder:
- `model.onnx`, the reference: the dynamo exporter, any architecture torch.export takes.
- `model.fused.onnx`, the fast one, for the architectures onnxruntime's transformer
  optimizer knows (`FUSABLE`): the TorchScript exporter with eager attention writes the
  pattern that optimizer recognises, and it fuses each layer's attention into one
  `Attention` op (which int8 then quantises as `QAttention`), the embeddings and their
  LayerNorm into `EmbedLayerNormalization`, residual + LayerNorm and bias + GELU. The
  dynamo graph fuses only the last two. The runtime serves it only after checking it
  against the reference (`runtime.py`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence

from reward_service import model_store

log = logging.getLogger(__name__)

OPSET = 18
EXPORT_VERSION = 2  # bump when the export code changes what it writes
# Per-channel weight scales: on MiniLM this kept Pearson vs fp32 at 0.996 where
# per-tensor scales gave 0.987, at the same speed. The name keys the cache.
INT8_VARIANT = "int8-per-channel"
# Hugging Face `model_type` -> onnxruntime transformer-optimizer model type, for the
# architectures whose attention that optimizer fuses. Anything else serves the reference graph.
FUSABLE = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert", "electra": "bert"}
INLINE_LIMIT_BYTES = 1_500_000_000  # fp32 weights above this export with external data (protobuf's limit is 2 GB)


def cache_dir() -> Path:
    return model_store.home() / "onnx"


def export_key(model_dir: Path, input_names: Sequence[str], pad_id: int) -> str:
    settings = {"opset": OPSET, "inputs": list(input_names), "pad_id": pad_id, "export_version": EXPORT_VERSION}
    digest = hashlib.sha256(model_store.content_hash(model_dir).encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _wrap(model, input_names: Sequence[str]):
    import torch

    class LogitsOnly(torch.nn.Module):
        """The model with its inputs by position (in `input_names` order) and only logits out."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(input_names, inputs))).logits

    return LogitsOnly(model)


def _example(input_names: Sequence[str]) -> tuple:
    """Example inputs for tracing. They must contain padding: with an all-ones mask
    transformers skips masking entirely, and the traced graph would ignore attention_mask."""
    import torch

    mask = torch.ones((2, 8), dtype=torch.long)
    mask[1, 5:] = 0
    example = {"input_ids": torch.full((2, 8), 100, dtype=torch.long), "attention_mask": mask}
    return tuple(example.get(name, torch.zeros((2, 8), dtype=torch.long)) for name in input_names)


def _export(model_dir: Path, target: Path, input_names: Sequence[str], pad_id: int) -> None:
    import torch

    from reward_service.engine.runtime import load_classifier

    model = load_classifier(model_dir, False, pad_id, dtype=torch.float32)  # the fp32 reference, whatever it ships in
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    external = 4 * sum(p.numel() for p in model.parameters()) > INLINE_LIMIT_BYTES  # protobuf holds 2 GB at most
    torch.onnx.export(
        _wrap(model, input_names).eval(),
        _example(input_names),
        str(target),
        input_names=list(input_names),
        output_names=["logits"],
        dynamic_shapes=(tuple({0: batch, 1: seq} for _ in input_names),),
        opset_version=OPSET,
        dynamo=True,
        external_data=external,
    )


def export_onnx(model_dir: Path, input_names: Sequence[str], pad_id: int) -> Path:
    """Return the fp32 ONNX graph for `model_dir` taking `input_names`, exporting it on first use."""
    folder = cache_dir() / export_key(model_dir, input_names, pad_id)
    graph = folder / "model.onnx"
    if graph.is_file():
        log.info("reusing cached ONNX export %s", graph)
        return graph
    staging = folder / f".staging.{os.getpid()}"
    staging.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s to ONNX (cached in %s)", model_dir, folder)
    _export(model_dir, staging / "model.onnx", input_names, pad_id)
    for written in sorted(staging.iterdir(), key=lambda f: f.name == "model.onnx"):  # the graph last: the marker
        written.replace(folder / written.name)  # external data keeps its name, which the graph refers to
    staging.rmdir()
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


class NotFusable(Exception):
    """The model's architecture is not one onnxruntime's transformer optimizer fuses."""


def fused_graph(fp32_graph: Path, model_dir: Path, input_names: Sequence[str], pad_id: int) -> tuple[Path, dict]:
    """The fused fp32 graph beside `fp32_graph` (built on first use) and the fused-op counts."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir).get_text_config()
    optimizer_type = FUSABLE.get(config.model_type)
    if optimizer_type is None:
        raise NotFusable(f"onnxruntime's transformer optimizer fuses no {config.model_type!r} attention")
    if any(fp32_graph.parent.glob("*.data")):
        raise NotFusable("the graph is over 2 GB (external data); the fused export is for smaller encoders")
    import onnxruntime

    target = fp32_graph.with_name("model.fused.onnx")
    meta = read_meta(fp32_graph.parent)
    built_with = f"onnxruntime {onnxruntime.__version__}"  # its optimizer writes the graph
    if target.is_file() and meta.get("fused_with") == built_with:
        return target, meta["fused_operators"]
    import torch
    from onnxruntime.transformers.optimizer import optimize_model

    from reward_service.engine.runtime import load_classifier

    model = load_classifier(model_dir, False, pad_id, dtype=torch.float32, attn_implementation="eager")
    traced = fp32_graph.with_name(f".model.traced.onnx.{os.getpid()}")
    staging = fp32_graph.with_name(f".model.fused.onnx.{os.getpid()}")
    try:
        torch.onnx.export(
            _wrap(model, input_names).eval(), _example(input_names), str(traced),
            input_names=list(input_names), output_names=["logits"],
            dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in input_names}, "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
        optimized = optimize_model(str(traced), model_type=optimizer_type, num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size)
        counts = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
        if not counts.get("Attention"):
            raise NotFusable(f"onnxruntime's optimizer fused no attention in this {config.model_type!r} graph "
                             f"(fused: {counts or 'nothing'})")
        optimized.save_model_to_file(str(staging))
        target.with_name(f"{target.stem}.{INT8_VARIANT}.onnx").unlink(missing_ok=True)  # derived from the old one
        staging.replace(target)
    finally:
        traced.unlink(missing_ok=True)
        staging.unlink(missing_ok=True)
    write_meta(fp32_graph.parent, {"fused_operators": counts, "fused_with": built_with})
    return target, counts


def quantize_int8(fp32_graph: Path) -> Path:
    """Dynamic int8 weights (activations quantised at run time), cached beside the fp32 graph
    it comes from (`model.onnx` -> `model.int8-per-channel.onnx`, `model.fused.onnx` ->
    `model.fused.int8-per-channel.onnx`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = fp32_graph.with_name(f"{fp32_graph.stem}.{INT8_VARIANT}.onnx")
    if target.is_file():
        return target
    import onnx

    staging = fp32_graph.with_name(f".model.int8.onnx.{os.getpid()}")
    # The dynamo exporter records example-sized intermediate shapes (value_info) that
    # contradict the dynamic axes during the quantiser's shape inference: drop them.
    stripped = fp32_graph.with_name(f".model.noshapes.onnx.{os.getpid()}")
    graph = onnx.load(str(fp32_graph))
    del graph.graph.value_info[:]
    onnx.save(graph, str(stripped))
    try:
        # DefaultTensorType: the fused ops (com.microsoft domain) defeat the quantiser's type
        # inference; every tensor it cannot type is fp32.
        quantize_dynamic(str(stripped), str(staging), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        stripped.unlink(missing_ok=True)
    staging.replace(target)
    return target
