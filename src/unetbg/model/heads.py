"""Output heads on top of the full-resolution decoder features."""

from __future__ import annotations

from torch import nn


class SegmentationHead(nn.Conv2d):
    """3×3 convolution to ``out_channels`` mask logits (no activation)."""

    def __init__(self, in_channels: int, out_channels: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1)


class ReconstructionHead(nn.Sequential):
    """3×3 convolution to RGB followed by a sigmoid: the person-only image in [0, 1]."""

    def __init__(self, in_channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, 3, kernel_size=3, padding=1), nn.Sigmoid())
