"""Checkpoints: plain dicts of tensors and values, saved atomically, loaded ``weights_only``.

A checkpoint is a dict with ``format_version`` (``FORMAT_VERSION``), ``model_config`` and
``preprocessing`` (``to_dict()`` of the dataclasses), ``state_dict``, ``epoch``, ``metrics`` and
optionally ``train_state`` (optimizer/scheduler/scaler state for exact resume). Only dicts,
lists, tuples, tensors, numbers, strings, bools and ``None`` are stored, so
``torch.load(weights_only=True)`` can read it without running any pickled code.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unetbg.durable import atomic_file
from unetbg.model.config import ModelConfig, Preprocessing
from unetbg.model.net import AttentionUNet, create_model
from unetbg.model.predict import resolve_device

FORMAT_VERSION = 1
_REQUIRED_KEYS = ("format_version", "model_config", "preprocessing", "state_dict")


class CheckpointError(Exception):
    """A checkpoint file is missing, unsafe, corrupt or of an unknown format."""


def _plain(value: Any, where: str) -> Any:
    """Copy ``value`` keeping only weights_only-loadable types (numpy scalars become numbers)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise CheckpointError(f"{where}: key {key!r} is not a string or integer")
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        items = [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise CheckpointError(
        f"{where}: {type(value).__name__} cannot be stored in a weights_only checkpoint; "
        "use dicts, lists, tensors, numbers and strings"
    )


def build_checkpoint(
    model: nn.Module,
    model_config: ModelConfig,
    preprocessing: Preprocessing,
    epoch: int,
    metrics: Mapping[str, Any],
    train_state: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a checkpoint dict (CPU copies of the weights; nothing shared with ``model``).

    ``train_state`` is e.g. ``{"optimizer": opt.state_dict(), "scheduler": …, "scaler": …}``.
    Raises ``CheckpointError`` naming the first value that a weights_only load could not read.
    """
    checkpoint = {
        "format_version": FORMAT_VERSION,
        "model_config": model_config.to_dict(),
        "preprocessing": preprocessing.to_dict(),
        "state_dict": _plain(model.state_dict(), "state_dict"),
        "epoch": int(epoch),
        "metrics": _plain(dict(metrics), "metrics"),
    }
    if train_state is not None:
        checkpoint["train_state"] = _plain(dict(train_state), "train_state")
    return checkpoint


def half_precision(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an inference checkpoint with its float32 weights stored as float16.

    Half the file; :func:`load_model` copies the values into a float32 model, so the
    network still computes in float32. BatchNorm running statistics stay float32: a tiny
    variance would lose most of its digits in float16. Training state is left out.
    """
    state = {
        name: value.half()
        if value.dtype == torch.float32 and not name.endswith(("running_mean", "running_var"))
        else value
        for name, value in checkpoint["state_dict"].items()
    }
    return {k: v for k, v in checkpoint.items() if k != "train_state"} | {"state_dict": state}


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically and return the path.

    The data goes to a temporary file in the same folder, is fsynced and then renamed over
    ``path`` with ``os.replace``, so a crash never leaves a partial checkpoint under ``path``.
    """
    path = Path(path)
    state = _plain(dict(state), "checkpoint")
    path.parent.mkdir(parents=True, exist_ok=True)
    # unetbg.durable is a stdlib-only leaf, the one module outside model/ it may import.
    with atomic_file(path) as handle:
        torch.save(state, handle)
    return path


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load and validate a checkpoint with ``torch.load(weights_only=True)``.

    Raises ``CheckpointError`` when the file is missing, contains pickled objects other than
    plain data (nothing in it is executed), is corrupt/truncated, lacks the required keys or has
    an unknown ``format_version``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: not a unetbg checkpoint or contains unsafe pickled objects; only "
            f"weights_only checkpoints are loaded ({_unpickling_detail(exc)})"
        ) from exc
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        IndexError,
        KeyError,
        struct.error,
        zipfile.BadZipFile,
    ) as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (corrupt, truncated or not a torch.save file): "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    if not isinstance(checkpoint, dict) or "format_version" not in checkpoint:
        raise CheckpointError(f"{path}: not a unetbg checkpoint (no format_version)")
    version = checkpoint["format_version"]
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported checkpoint format_version {version!r}; this version of "
            f"unetbg reads format_version {FORMAT_VERSION}"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks required key(s) {missing}")
    return checkpoint


# Boilerplate lines of torch's weights_only error; the remaining lines name the refused object.
_TORCH_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _unpickling_detail(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines()]
    detail = [line for line in lines if line and not line.startswith(_TORCH_ADVICE)]
    return "; ".join(detail) or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_model(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[AttentionUNet, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint; returns ``(model.eval(), checkpoint)``.

    The network is rebuilt from the stored ``model_config`` with ``encoder_weights`` ignored
    (the checkpoint holds all weights) and its state_dict is loaded strictly. ``device`` is
    resolved with ``resolve_device``.
    """
    checkpoint = load_checkpoint(path, map_location="cpu")
    try:
        config = ModelConfig.from_dict(checkpoint["model_config"])
        Preprocessing.from_dict(checkpoint["preprocessing"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model_config/preprocessing: {exc}") from exc
    model = create_model(dataclasses.replace(config, encoder_weights=None))
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not match the stored model_config: {_first_line(exc)}"
        ) from exc
    return model.to(resolve_device(device)).eval(), checkpoint
