"""The network exported to ONNX, run by ONNX Runtime or OpenVINO (CPU).

The export is of the folded model (:func:`unetbg.model.fuse.fuse_for_inference`),
with a dynamic batch axis and the checkpoint's letterbox size fixed: that is the only
shape the removal loop feeds. It takes a few seconds and happens when a backend is
created (once per :class:`~unetbg.inference.ModelInference`); the file lives in a
temporary folder only while the runtime reads it.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unetbg.model.fuse import fuse_for_inference


class _Logits(nn.Module):
    """The network with a tensor output (ONNX graphs return tensors, not dicts)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)["mask"]


def export_onnx(model: nn.Module, path: str | Path, image_size: int) -> Path:
    """Write the folded ``model`` as ONNX to ``path``: input ``image`` ``N×3×S×S``
    float32 (normalised), output ``logits`` ``N×1×S×S``."""
    path = Path(path)
    network = _Logits(fuse_for_inference(model).cpu()).eval()
    example = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter about unused features
        torch.onnx.export(
            network,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=256)},),
            dynamo=True,
            opset_version=18,
            verbose=False,
        )
    return path


def _exported(model: nn.Module, image_size: int, load):
    with tempfile.TemporaryDirectory(prefix="unetbg-onnx-") as folder:
        return load(export_onnx(model, Path(folder) / "model.onnx", image_size))


class OnnxRuntimeBackend:
    """ONNX Runtime, CPU execution provider, all graph optimisations."""

    name = "onnxruntime"

    def __init__(self, model: nn.Module, image_size: int, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = _exported(
            model,
            image_size,
            lambda p: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]),
        )

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run(["logits"], {"image": inputs})
        return torch.from_numpy(logits)


class OpenVinoBackend:
    """OpenVINO on the CPU, latency hint, fp32 inference precision (no bf16/int8)."""

    name = "openvino"

    def __init__(self, model: nn.Module, image_size: int, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = _exported(
            model, image_size, lambda p: core.compile_model(core.read_model(str(p)), "CPU", config)
        )
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        result = self.request.infer({0: inputs})
        return torch.from_numpy(np.array(result[self.compiled.output(0)]))
