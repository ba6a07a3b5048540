"""Runtimes: something that turns padded token arrays into logits.

`OnnxRuntime` (default) runs an exported graph with onnxruntime, which releases
the GIL, so the event loop keeps serving while a batch runs. `TorchRuntime`
runs the Hugging Face model directly, for users who want no export step.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class TorchRuntime:
    def __init__(self, model_dir: Path, threads: int = 0):
        import torch
        from transformers import AutoModelForSequenceClassification

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False).eval()
        # inspect.signature sees through the decorators transformers wraps forward in
        self._accepts_types = "token_type_ids" in inspect.signature(self.model.forward).parameters
        self.description = {"runtime": "torch", "provider": "cpu", "precision": "fp32"}

    def run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        feeds = {k: torch.from_numpy(v) for k, v in arrays.items() if k != "token_type_ids" or self._accepts_types}
        with torch.inference_mode():
            return self.model(**feeds).logits.float().numpy()


class OnnxRuntime:
    def __init__(self, graph: Path, threads: int = 0, providers: list[str] | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(graph), options, providers=providers or ["CPUExecutionProvider"])
        self._inputs = [i.name for i in self.session.get_inputs()]
        self.description = {
            "runtime": "onnx",
            "provider": self.session.get_providers()[0],
            "graph": str(graph),
        }

    def run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: arrays[name] for name in self._inputs}
        return self.session.run(None, feeds)[0].astype(np.float32, copy=False)


def cuda_available_to_onnxruntime() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def make_runtime(model_dir: Path, settings, sample_feeds: dict[str, np.ndarray]):
    """Pick device and precision from the settings and what this machine has.

    `sample_feeds` (padded sample inputs) are used to check a cheaper graph
    against fp32 before accepting it. Every choice and fallback is logged and
    recorded in the runtime's `description`, which /v1/backends shows.
    """
    from reward_service.engine import export, fidelity

    notes: list[str] = []
    wants_cuda = settings.device in ("auto", "cuda")
    if settings.runtime == "torch":
        runtime = TorchRuntime(model_dir, settings.threads)
        if settings.device == "cuda" or settings.precision in ("int8", "fp16"):
            notes.append("the torch runtime serves fp32 on CPU; use runtime: onnx for int8 or CUDA fp16")
        runtime.description["notes"] = notes
        for note in notes:
            log.warning("%s: %s", model_dir, note)
        return runtime

    fp32_graph = export.export_onnx(model_dir)
    cuda = wants_cuda and cuda_available_to_onnxruntime()
    if settings.device == "cuda" and not cuda:
        notes.append("device: cuda was asked for but onnxruntime has no CUDAExecutionProvider here; serving on CPU")

    if cuda:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if settings.precision in ("auto", "fp16"):
            graph, precision = export.convert_fp16(fp32_graph), "fp16"
        else:
            graph, precision = fp32_graph, "fp32"
            if settings.precision == "int8":
                notes.append("int8 is a CPU optimisation; serving fp32 on CUDA")
        runtime = OnnxRuntime(graph, settings.threads, providers)
        if runtime.description["provider"] != "CUDAExecutionProvider":
            notes.append("the CUDA provider failed to start; onnxruntime fell back to CPU")
        if precision == "fp16":
            reference = OnnxRuntime(fp32_graph, settings.threads, ["CPUExecutionProvider"]).run(sample_feeds)
            runtime.description["fidelity_vs_fp32"] = fidelity.compare(reference, runtime.run(sample_feeds))
    else:
        precision = "fp32"
        runtime = OnnxRuntime(fp32_graph, settings.threads)
        if settings.precision == "fp16":
            notes.append("fp16 needs CUDA; serving fp32 on CPU")
        if settings.precision in ("auto", "int8"):
            quantized, check = _checked_int8(fp32_graph, runtime, settings, sample_feeds)
            if quantized is not None:
                runtime, precision = quantized, "int8"
            else:
                notes.append(
                    f"int8 refused: Pearson {check['pearson']} vs fp32 is below int8_min_pearson "
                    f"{settings.int8_min_pearson}; serving fp32"
                )
            runtime.description["int8_fidelity_vs_fp32"] = check
    runtime.description["precision"] = precision
    runtime.description["notes"] = notes
    for note in notes:
        log.warning("%s: %s", model_dir, note)
    return runtime


def _checked_int8(fp32_graph: Path, fp32_runtime: "OnnxRuntime", settings, sample_feeds):
    """Quantise (cached), compare with fp32 on the samples, accept only above the threshold."""
    from reward_service.engine import export, fidelity

    meta = export.read_meta(fp32_graph.parent)
    int8_graph = export.quantize_int8(fp32_graph)
    candidate = OnnxRuntime(int8_graph, settings.threads)
    key = f"fidelity_{export.INT8_VARIANT}"
    check = meta.get(key)
    if check is None:
        check = fidelity.compare(fp32_runtime.run(sample_feeds), candidate.run(sample_feeds))
        export.write_meta(fp32_graph.parent, {key: check})
    accepted = check["pearson"] >= settings.int8_min_pearson
    return (candidate if accepted else None), check
