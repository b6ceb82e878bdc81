"""The network exported to ONNX, run by ONNX Runtime or OpenVINO (CPU).

The export is of the folded model (:func:`unetbg.model.fuse.fuse_for_inference`),
with a dynamic batch axis and the checkpoint's letterbox size fixed: that is the only
shape the removal loop feeds. It takes a few seconds and happens when a backend is
created (once per :class:`~unetbg.inference.ModelInference`). With an
:class:`ExportCache` the graph is kept on disk, named by the checkpoint file's sha256,
the letterbox size and the exporter's (torch's) version, so the next process starts
without exporting; without one it lives in a temporary folder only while the runtime
reads it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from unetbg.model.fuse import fuse_for_inference

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The ONNX opset of the export (part of the cache key: a new one means a new graph).
OPSET = 18


@dataclass(frozen=True)
class ExportCache:
    """Where exported graphs are kept (``folder``), and the sha256 of the checkpoint file
    the model was loaded from (its weights are what the graph holds)."""

    folder: Path
    checkpoint_sha256: str

    def path(self, image_size: int) -> Path:
        """The graph's file. What changes the graph is in its name: the weights, the
        letterbox size, the exporter (torch) and the opset. The runtime that reads it
        is not: both runtimes read the same file, each compiling it afresh."""
        torch_version = torch.__version__.replace("+", "_")
        name = f"{self.checkpoint_sha256[:32]}-{image_size}px-torch{torch_version}-opset{OPSET}"
        return self.folder / f"{name}.onnx"


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
            external_data=False,  # one self-contained file (the weights are ~50 MB)
            opset_version=OPSET,
            verbose=False,
        )
    return path


def _exported(
    model: nn.Module, image_size: int, load: Callable[[Path], T], cache: ExportCache | None
) -> tuple[T, str]:
    """``load`` of the exported graph: the cached file when there is a readable one,
    else a fresh export (written to the cache, when there is one, once it has loaded);
    and where the graph came from, for people (``graph cached``)."""
    if cache is None:
        with tempfile.TemporaryDirectory(prefix="unetbg-onnx-") as folder:
            return load(export_onnx(model, Path(folder) / "model.onnx", image_size)), "exported"
    path = cache.path(image_size)
    if path.is_file():
        try:
            loaded = load(path)
        except Exception as exc:  # a truncated or corrupt file: made again, never fatal
            log.warning("exported model %s is unreadable (%s): exporting it again", path, exc)
        else:
            log.info("exported model: cached %s", path)
            return loaded, "graph cached"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside its name and renamed once it loads: a process killed mid-export,
    # or two exporting at once, never leaves (or reads) half a graph under the name.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        loaded = load(export_onnx(model, tmp, image_size))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported model: written to the cache %s", path)
    return loaded, "graph exported and cached"


class OnnxRuntimeBackend:
    """ONNX Runtime, CPU execution provider, all graph optimisations."""

    name = "onnxruntime"

    def __init__(
        self, model: nn.Module, image_size: int, threads: int, cache: ExportCache | None = None
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session, self.graph = _exported(
            model,
            image_size,
            lambda p: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]),
            cache,
        )

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run(["logits"], {"image": inputs})
        return torch.from_numpy(logits)


class OpenVinoBackend:
    """OpenVINO on the CPU, latency hint, fp32 inference precision (no bf16/int8)."""

    name = "openvino"

    def __init__(
        self, model: nn.Module, image_size: int, threads: int, cache: ExportCache | None = None
    ) -> None:
        import openvino as ov

        core = ov.Core()
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": "f32",
        }
        if cache is not None:  # OpenVINO keeps its compiled blobs there, keyed its own way
            config["CACHE_DIR"] = str(cache.folder / f"openvino-{ov.__version__}")
        self.compiled, self.graph = _exported(
            model,
            image_size,
            lambda p: core.compile_model(core.read_model(str(p)), "CPU", config),
            cache,
        )
        self.request = self.compiled.create_infer_request()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        result = self.request.infer({0: inputs})
        return torch.from_numpy(np.array(result[self.compiled.output(0)]))
