"""Runtimes: something that turns padded token arrays into rewards' raw outputs.

Two runtimes behind one batcher:
- `OnnxRuntime`, the CPU path: an exported graph run by onnxruntime (which releases
  the GIL, so the event loop keeps serving), int8 when it passes the fidelity check.
- `TorchRuntime`, the GPU path (and the CPU path for custom-code models or by
  choice): the Hugging Face model itself, in bf16 (or fp16) with SDPA attention on CUDA.

`make_runtime` picks one from the settings and what this machine has; every
choice and fallback is logged and recorded in the runtime's `description`,
which /v1/backends shows.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# Batching defaults per runtime (config overrides them): on a CPU, small batches, one per core
# at once, one onnxruntime thread each (measured: see engine/batcher.py); on a GPU, one big one.
CPU_BATCH_TOKENS = 512
TORCH_BATCH_TOKENS = 16384
MAX_CPU_WORKERS = 8  # beyond this, bigger batches on more threads each (a many-core host: set workers/threads)
TORCH_WAIT_MS = 2.0  # a GPU batch of 1 costs about what one of 32 does: worth waiting for company


def cpu_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def batch_plan(batching, runtime: str, threads: int = 0):
    """The batching settings with this runtime's defaults filled in (validated: a default never
    exceeds what config may ask). With ONNX, as many workers as `threads`-sized shares of the cores."""
    onnx = runtime == "onnx"
    workers = max(1, min(MAX_CPU_WORKERS, cpu_cores() // (threads or 1))) if onnx else 1
    return type(batching).model_validate({**batching.model_dump(), **{
        "workers": batching.workers or workers,
        "max_batch_tokens": batching.max_batch_tokens or (CPU_BATCH_TOKENS if onnx else TORCH_BATCH_TOKENS),
        "max_wait_ms": (0.0 if onnx else TORCH_WAIT_MS) if batching.max_wait_ms is None else batching.max_wait_ms,
    }})


def load_classifier(model_dir: Path, trust_remote_code: bool, pad_id: int, **options):
    """The sequence-classification model of `model_dir`, told which id pads its batches."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, use_safetensors=True, trust_remote_code=trust_remote_code, **options).eval()
    model.config.pad_token_id = pad_id  # decoders read the reward at the last token that is not the pad id
    return model


def read_output(outputs, name: str):
    """The rewards tensor from a model's outputs (`logits`, or e.g. ArmoRM's `score`), as
    (batch, columns)."""
    value = getattr(outputs, name, None)
    if value is None and isinstance(outputs, dict):
        value = outputs.get(name)
    if value is None:
        available = list(outputs.keys()) if hasattr(outputs, "keys") else type(outputs).__name__
        raise ValueError(f"the model's output has no {name!r} (it has {available}); set `output` in the config")
    return value.reshape(value.shape[0], -1)


class TorchRuntime:
    def __init__(self, model_dir: Path, settings, pad_id: int, device: str, precision: str):
        import torch

        if settings.threads:
            torch.set_num_threads(settings.threads)  # process-wide: the last backend loaded sets it
        self._torch = torch
        self.device = device
        self.output = settings.output
        options = {"dtype": getattr(torch, TORCH_DTYPES[precision])}
        try:
            self.model = load_classifier(model_dir, settings.trust_remote_code, pad_id,
                                         attn_implementation="sdpa", **options)
        except (ValueError, ImportError) as exc:  # a model class without SDPA support
            if "attention" not in str(exc).lower():
                raise
            self.model = load_classifier(model_dir, settings.trust_remote_code, pad_id, **options)
        self.model.to(device)
        self.description = {
            "runtime": "torch", "device": device, "precision": precision,
            "attention": getattr(self.model.config, "_attn_implementation", None) or "default",
        }

    def run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        feeds = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
        with torch.inference_mode():
            return read_output(self.model(**feeds), self.output).float().cpu().numpy()


class OnnxRuntime:
    """One onnxruntime session. Its intra-op threads do not spin while idle: a spinning pool
    keeps both cores of a small machine busy between batches, starving the event loop and the
    tokenizer that feed it (measured: 44% more CPU per item with spinning, same graph)."""

    def __init__(self, graph: Path, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.graph = Path(graph)
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self.session.get_inputs()]
        self.description = {"runtime": "onnx", "device": "cpu", "provider": "CPUExecutionProvider",
                            "graph": str(graph)}

    def run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: arrays[name] for name in self._inputs}
        return self.session.run(None, feeds)[0].astype(np.float32, copy=False)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def make_runtime(model_dir: Path, settings, sample_feeds: dict[str, np.ndarray], pad_id: int):
    """The runtime these settings ask for on this machine. `sample_feeds` (padded sample
    inputs) check a cheaper graph against fp32 before it is accepted."""
    notes: list[str] = []
    cuda = settings.device in ("auto", "cuda") and cuda_available()
    if settings.device == "cuda" and not cuda:
        notes.append("device: cuda was asked for but torch sees no GPU; serving on CPU")
    runtime = settings.runtime
    if runtime == "auto":  # ONNX exports `logits` of built-in model classes only
        runtime = "torch" if cuda or settings.trust_remote_code or settings.output != "logits" else "onnx"
    elif runtime == "onnx" and settings.trust_remote_code:
        notes.append("a model with its own code (trust_remote_code) is served by torch, not exported to ONNX")
        runtime = "torch"
    elif runtime == "onnx" and cuda:
        notes.append("ONNX is the CPU path here (no onnxruntime-gpu); runtime: torch serves on the GPU")
        cuda = False

    batching = batch_plan(settings.batching, runtime, settings.threads)
    if runtime == "torch":
        precision = _torch_precision(settings.precision, cuda, notes)
        built = TorchRuntime(model_dir, settings, pad_id, "cuda" if cuda else "cpu", precision)
    else:  # the cores shared out between the batches that run at once
        threads = settings.threads or max(1, cpu_cores() // batching.workers)  # never oversubscribed by default
        built = _onnx_runtime(model_dir, settings, threads, sample_feeds, pad_id, notes)
        built.description["intra_op_threads"] = threads
    built.batching = batching
    built.description["notes"] = notes
    for note in notes:
        log.warning("%s: %s", model_dir, note)
    return built


def _torch_precision(asked: str, cuda: bool, notes: list[str]) -> str:
    if cuda:
        import torch

        if asked == "int8":
            notes.append("int8 is the CPU (ONNX) path; serving bf16 on CUDA")
        precision = {"auto": "bf16", "int8": "bf16"}.get(asked, asked)
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            notes.append("this GPU has no bf16; serving fp16")
            precision = "fp16"
        return precision
    if asked in ("fp16", "bf16", "int8"):
        notes.append(f"{asked} asked for, but torch on CPU serves fp32 (int8: use runtime: onnx)")
    return "fp32"


# The fused graph computes the reference's fp32 function with other kernels: only rounding may differ.
FUSED_MIN_PEARSON = 0.99999
FUSED_MAX_ABS_DIFF = 1e-3


def _onnx_runtime(model_dir: Path, settings, threads: int, sample_feeds, pad_id: int,
                  notes: list[str]) -> OnnxRuntime:
    from reward_service.engine import export

    if settings.output != "logits":
        raise ValueError(f"output {settings.output!r}: only `logits` is exported to ONNX; use runtime: torch")
    reference_graph = export.export_onnx(model_dir, list(sample_feeds), pad_id)
    reference = OnnxRuntime(reference_graph, threads)
    reference_outputs = reference.run(sample_feeds)
    fp32, fusion = reference, {"graph_variant": "reference"}
    if settings.onnx_graph != "reference":
        fused, fusion = _checked_fused(reference_graph, reference_outputs, model_dir, threads, sample_feeds, pad_id)
        failed = fusion.pop("fusion_failed", False)  # asked for, tried and broke, or checked and refused: say so
        if fused is not None:
            fp32 = fused
        elif failed or settings.onnx_graph == "fused" or "fused_fidelity_vs_reference" in fusion:
            notes.append(f"fused graph not used ({fusion['fusion']}); serving the reference graph")
    runtime, precision = fp32, "fp32"
    if settings.precision in ("fp16", "bf16"):
        notes.append(f"{settings.precision} needs CUDA (runtime: torch); serving fp32 on CPU")
    if settings.precision in ("auto", "int8") and any(reference_graph.parent.glob("*.data")):
        notes.append("int8 not attempted: the graph is over 2 GB (external data); serving fp32")
    elif settings.precision in ("auto", "int8"):
        try:
            quantized, check = _checked_int8(fp32.graph, reference_outputs, settings, threads, sample_feeds)
        except Exception as exc:  # a graph the quantiser cannot take: fp32 still serves
            quantized, check = None, None
            notes.append(f"int8 failed ({type(exc).__name__}: {str(exc)[:200]}); serving fp32")
        if quantized is not None:
            runtime, precision = quantized, "int8"
            notes.append(f"int8: an item's outputs move by up to {check['batch_dependence_max_abs_diff']} with its "
                         "batch-mates (activations share one scale per batch); precision: fp32 does not")
        elif check is not None:
            notes.append(f"int8 refused: {_int8_refusal(check, settings)}; serving fp32")
        if check is not None:
            runtime.description["int8_fidelity_vs_fp32"] = check
    runtime.description.update(fusion, precision=precision)
    return runtime


def _checked_fused(reference_graph: Path, reference_outputs, model_dir: Path, threads: int, sample_feeds,
                   pad_id: int) -> tuple[OnnxRuntime | None, dict]:
    """The fused fp32 graph if this architecture has one and it gives the reference's outputs
    on the samples (checked once, cached), and what was found, for /v1/backends."""
    from reward_service.engine import export, fidelity

    try:
        graph, operators = export.fused_graph(reference_graph, model_dir, list(sample_feeds), pad_id)
    except export.NotFusable as exc:
        return None, {"graph_variant": "reference", "fusion": str(exc)}
    except Exception as exc:  # an exporter or optimizer failure: the reference graph still serves
        return None, {"graph_variant": "reference", "fusion_failed": True,
                      "fusion": f"fused export failed ({type(exc).__name__}: {str(exc)[:200]})"}
    fused = OnnxRuntime(graph, threads)
    check = _cached_check(reference_graph.parent, "fidelity_fused", sample_feeds,
                          lambda: fidelity.compare(reference_outputs, fused.run(sample_feeds)))
    found = {"fused_operators": operators, "fused_fidelity_vs_reference": check}
    if check["pearson"] < FUSED_MIN_PEARSON or check["max_abs_diff"] > FUSED_MAX_ABS_DIFF:
        return None, {"graph_variant": "reference", **found,
                      "fusion": f"the fused graph differs from the reference (Pearson {check['pearson']}, "
                                f"max abs difference {check['max_abs_diff']})"}
    return fused, {"graph_variant": "fused", **found}


def _checked_int8(fp32_graph: Path, reference_outputs, settings, threads: int, sample_feeds):
    """Quantise the served fp32 graph (cached), compare with the fp32 reference on the samples,
    accept only above the threshold."""
    from reward_service.engine import export, fidelity

    int8_graph = export.quantize_int8(fp32_graph)
    candidate = OnnxRuntime(int8_graph, threads)
    check = _cached_check(fp32_graph.parent, f"fidelity_{int8_graph.stem}", sample_feeds, lambda: {
        **fidelity.compare(reference_outputs, candidate.run(sample_feeds)),
        "batch_dependence_max_abs_diff": fidelity.batch_dependence(candidate.run, sample_feeds)})
    return (None if _int8_refusal(check, settings) else candidate), check


def _int8_refusal(check: dict, settings) -> str | None:
    """Why int8 is refused for this check, or None when it is accepted."""
    if check["pearson"] < settings.int8_min_pearson:
        return f"Pearson {check['pearson']} vs fp32 is below int8_min_pearson {settings.int8_min_pearson}"
    limit = settings.int8_max_batch_dependence
    if limit is not None and check["batch_dependence_max_abs_diff"] > limit:
        return (f"outputs move by up to {check['batch_dependence_max_abs_diff']} with batch-mates, over "
                f"int8_max_batch_dependence {limit}")
    return None


def _cached_check(folder: Path, key: str, sample_feeds, compute) -> dict:
    """A fidelity check stored in the export's meta.json, reused only for the same onnxruntime
    (which writes fused graphs and runs the kernels) and the same sample inputs (they follow the
    formatting and length settings)."""
    import hashlib

    import onnxruntime

    from reward_service.engine import export

    digest = hashlib.sha256()
    for name in sorted(sample_feeds):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(sample_feeds[name]).tobytes())
    computed_with = f"onnxruntime {onnxruntime.__version__}, samples {digest.hexdigest()[:12]}"
    check = export.read_meta(folder).get(key)
    if check is None or check.get("computed_with") != computed_with:
        check = {**compute(), "computed_with": computed_with}
        export.write_meta(folder, {key: check})
    return check
