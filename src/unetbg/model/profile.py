"""Model size and compute figures, shared by tests and the benchmark."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, size: int | tuple[int, int] = 384, batch: int = 1) -> int:
    """FLOPs of one forward pass on a ``batch×3×H×W`` input (``size`` int means square).

    Counted with ``torch.utils.flop_counter.FlopCounterMode``, which counts a multiply-add as
    2 FLOPs (so MACs = FLOPs / 2) and covers convolutions and matrix products only: batch
    norm, activations, interpolation and padding are not counted. The model's training flag
    is restored afterwards.
    """
    h, w = (size, size) if isinstance(size, int) else size
    param = next(model.parameters())
    x = torch.zeros(batch, 3, h, w, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
