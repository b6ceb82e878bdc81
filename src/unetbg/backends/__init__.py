"""Inference backends: what runs the network on a batch of letterboxed images.

Every backend is built from a loaded :class:`~unetbg.model.AttentionUNet` and is
called with an ``N×3×S×S`` normalised float32 batch (a CPU tensor, or already on the
device for ``torch``); it returns ``N×1×S×S`` mask logits. Letterboxing before and
restoring the probabilities after are the same for all backends
(:mod:`unetbg.model.predict`).

=============  ===============================================================  ==========
name           what runs                                                         install
=============  ===============================================================  ==========
``torch``      the model folded for inference (:func:`~unetbg.model.fuse.`       built in
               ``fuse_for_inference``), channels_last, AMP on CUDA
``onnxruntime``  the folded model exported to ONNX, ONNX Runtime's CPU provider  ``unetbg[onnxruntime]``
``openvino``   the same ONNX graph compiled by OpenVINO for the CPU               ``unetbg[openvino]``
=============  ===============================================================  ==========

:func:`create_backend` resolves the name, failing with the list of valid names or
with the ``pip install`` line when the package is missing. ``auto`` is the first of
:data:`AUTO_ORDER` for the device that is installed *and* builds for the model: one
that is missing or fails to export is passed over, and the reason is said
(:class:`Chosen`), never raised.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from unetbg.backends.exported import ExportCache
from unetbg.model.fuse import fuse_for_inference

log = logging.getLogger(__name__)

#: Backend name -> the module it needs (``None``: always available).
BACKENDS: dict[str, str | None] = {
    "torch": None,
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
}


#: What ``auto`` tries, fastest first, by device type (measured on a 2-core CPU:
#: docs/performance.md). ONNX Runtime is not in it: it measured no faster than torch
#: (0.96x network only, 0.9x end to end) for a multi-second export at the first load.
#: On a GPU only torch runs there (float16 autocast).
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cpu": ("openvino", "torch"),
    "cuda": ("torch",),
}
AUTO = "auto"

#: Images per forward pass when a request names none, by (device type, backend): meant
#: to be the batch that runs ``remove-dir`` fastest end to end on that class of machine
#: (``benchmarks/bench_remove_dir.py``, docs/performance.md). The CPU's are still the
#: old default, 4: the sweep has not yet been run on a machine free enough to tell
#: batch sizes apart. CUDA keeps the Python API's former default, 8.
DEFAULT_BATCH: dict[tuple[str, str], int] = {
    ("cpu", "torch"): 4,
    ("cpu", "onnxruntime"): 4,
    ("cpu", "openvino"): 4,
    ("cuda", "torch"): 8,
}


def default_batch_size(device_type: str, backend: str) -> int:
    """The batch size a request that names none runs with (:data:`DEFAULT_BATCH`; 4, the
    old default, for a pair not measured)."""
    return DEFAULT_BATCH.get((device_type, backend), 4)


Backend = Callable[[torch.Tensor], torch.Tensor]


class BackendUnavailable(RuntimeError):
    """The backend's package is not installed (the message says how to install it)."""


def available_backends() -> list[str]:
    """The backends whose packages are installed here."""
    return [n for n, mod in BACKENDS.items() if mod is None or importlib.util.find_spec(mod)]


class TorchBackend:
    """The model in PyTorch: folded (``fuse=True``), channels_last, AMP on CUDA.

    ``amp``: ``None`` -> on for CUDA only; float16 on CUDA, bfloat16 on the CPU.
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        fuse: bool = True,
        channels_last: bool | None = None,
        amp: bool | None = None,
    ) -> None:
        self.device = device
        self.channels_last = True if channels_last is None else channels_last
        self.amp = device.type == "cuda" if amp is None else amp
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        net = fuse_for_inference(model) if fuse else model.eval()
        self.network = net.to(device=device, memory_format=self.memory_format)
        self.fused = fuse

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.device != self.device:
            pinned = batch.pin_memory() if self.device.type == "cuda" else batch
            batch = pinned.to(self.device, non_blocking=True)
        batch = batch.contiguous(memory_format=self.memory_format)
        with torch.inference_mode(), self._autocast():
            return self.network(batch)["mask"].float()


@dataclass(frozen=True)
class Chosen:
    """What :func:`choose_backend` built: the ``backend``, its ``name`` and ``why``
    (``auto: fastest installed for cpu; openvino not installed; graph cached``, or
    ``""`` for torch named), said once per load (:meth:`said`)."""

    backend: Backend
    name: str
    why: str

    def said(self) -> str:
        """``backend: onnxruntime (auto: …)``: the line a command prints on stderr."""
        return f"backend: {self.name}" + (f" ({self.why})" if self.why else "")


def create_backend(
    name: str,
    model: nn.Module,
    image_size: int,
    device: torch.device,
    fuse: bool = True,
    channels_last: bool | None = None,
    amp: bool | None = None,
    threads: int | None = None,
    cache: ExportCache | None = None,
) -> Backend:
    """The backend ``name`` for ``model`` (see the module docstring; not ``auto``:
    :func:`choose_backend` resolves that).

    ``onnxruntime`` and ``openvino`` run on the CPU only (``device`` must be the CPU)
    with ``threads`` intra-op threads (default: torch's thread count), from the graph
    in ``cache`` when it holds one (:class:`~unetbg.backends.exported.ExportCache`).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "torch":
        return TorchBackend(model, device, fuse, channels_last, amp)
    module = BACKENDS[name]
    if importlib.util.find_spec(module) is None:
        raise BackendUnavailable(
            f"backend {name!r} needs the {module} package: pip install 'unetbg[{name}]'"
        )
    if device.type != "cpu":
        raise ValueError(f"backend {name!r} runs on the CPU only, not on {device}")
    from unetbg.backends import exported

    threads = threads or torch.get_num_threads()
    factory = exported.OnnxRuntimeBackend if name == "onnxruntime" else exported.OpenVinoBackend
    return factory(model, image_size, threads, cache)


def choose_backend(
    name: str,
    model: nn.Module,
    image_size: int,
    device: torch.device,
    **options,
) -> Chosen:
    """:func:`create_backend` (same ``options``), with ``auto`` resolved: the first
    backend of :data:`AUTO_ORDER` for ``device`` that is installed and builds for
    ``model``. Those passed over are named in :attr:`Chosen.why`, and an export that
    failed is logged with its reason; torch, last, always builds."""
    if name != AUTO:
        backend = create_backend(name, model, image_size, device, **options)
        return Chosen(backend, name, getattr(backend, "graph", ""))
    passed: list[str] = []
    order = AUTO_ORDER.get(device.type, ("torch",))
    for candidate in order:
        try:
            backend = create_backend(candidate, model, image_size, device, **options)
        except BackendUnavailable:
            passed.append(f"{candidate} not installed")
            continue
        except Exception as exc:  # an export or a runtime that fails here: the next one
            if candidate == order[-1]:
                raise
            log.warning("backend %s failed for this model, trying the next: %s", candidate, exc)
            passed.append(f"{candidate} failed: {type(exc).__name__}")
            continue
        graph = [backend.graph] if hasattr(backend, "graph") else []
        why = "; ".join([f"auto: fastest installed for {device.type}", *passed, *graph])
        return Chosen(backend, candidate, why)
    raise AssertionError(f"AUTO_ORDER for {device.type} must end with torch")  # pragma: no cover


__all__ = [
    "AUTO",
    "AUTO_ORDER",
    "BACKENDS",
    "DEFAULT_BATCH",
    "BackendUnavailable",
    "Chosen",
    "ExportCache",
    "TorchBackend",
    "available_backends",
    "choose_backend",
    "create_backend",
    "default_batch_size",
]
