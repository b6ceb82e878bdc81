"""Pieces both job benchmarks use (run them as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_checkpoint(path: Path, image_size: int) -> None:
    """A checkpoint of the full-size model with random weights (speed does not depend on them)."""
    import torch

    from unetbg.model import (
        ModelConfig,
        Preprocessing,
        build_checkpoint,
        create_model,
        save_checkpoint,
    )

    torch.manual_seed(0)
    config = ModelConfig()  # the real architecture: resnet34 encoder, full decoder
    state = build_checkpoint(
        create_model(config), config, Preprocessing(image_size=image_size), 0, {}
    )
    save_checkpoint(path, state)
