"""Runtimes: something that turns padded token arrays into logits.

`OnnxRuntime` (default) runs an exported graph with onnxruntime, which releases
the GIL, so the event loop keeps serving while a batch runs. `TorchRuntime`
runs the Hugging Face model directly, for users who want no export step.
"""

from __future__ import annotations

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
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True).eval()
        self._accepts_types = "token_type_ids" in self.model.forward.__code__.co_varnames
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
