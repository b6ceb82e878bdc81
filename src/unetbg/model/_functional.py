"""Pure loss helpers over tensors; ``valid`` is 1 where a pixel counts and 0 where ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce_with_logits(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Mean binary cross-entropy over valid pixels (0 when no pixel is valid)."""
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (per_pixel * valid).sum() / valid.sum().clamp_min(1.0)


def soft_dice_loss(
    probs: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, smooth: float = 1.0
) -> torch.Tensor:
    """``1 - (2|P∩T| + s) / (|P| + |T| + s)`` over all valid pixels of the batch.

    Summing over the whole batch (rather than averaging per image) keeps the loss stable for
    images with no person, where a per-image Dice is dominated by ``smooth``.
    """
    probs = probs * valid
    target = target * valid
    intersection = (probs * target).sum()
    cardinality = probs.sum() + target.sum()
    return 1.0 - (2.0 * intersection + smooth) / (cardinality + smooth)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over valid pixels and all channels (``valid`` is ``N×1×H×W``)."""
    per_pixel = (pred - target).abs() * valid
    count = valid.sum() * pred.shape[1]
    return per_pixel.sum() / count.clamp_min(1.0)
