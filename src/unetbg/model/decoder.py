"""U-Net decoder whose channel sizes derive from the encoder's ``out_channels``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unetbg.model.attention import Attention


class ConvBnReLU(nn.Sequential):
    """3×3 convolution, batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DecoderBlock(nn.Module):
    """Gate the skip with attention, upsample ``x`` to the skip's size, concat, two convs.

    The attention's gating signal is ``x`` itself before upsampling (the coarser level).
    """

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, attention: str | None
    ) -> None:
        super().__init__()
        self.attention = Attention(
            attention, skip_channels=skip_channels, gate_channels=in_channels
        )
        self.conv1 = ConvBnReLU(in_channels + skip_channels, out_channels)
        self.conv2 = ConvBnReLU(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``x``: coarser decoder features; ``skip``: encoder features at the target size."""
        skip = self.attention(skip, x)
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


class UnetDecoder(nn.Module):
    """Chain of ``DecoderBlock``s from the deepest encoder feature up to full resolution.

    ``encoder_channels`` is the encoder's ``out_channels`` (input first, deepest last). The
    deepest feature is the decoder's input; every other feature, including the normalised input
    image itself, is a skip connection (the image skip gives the last block full-resolution
    edge detail, which matters for cut-outs). ``decoder_channels`` gives each block's output
    channels, coarsest first, and must have ``len(encoder_channels) - 1`` entries.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        attention: str | None,
    ) -> None:
        super().__init__()
        if len(decoder_channels) != len(encoder_channels) - 1:
            raise ValueError(
                f"decoder_channels needs {len(encoder_channels) - 1} entries (one per encoder "
                f"stage), got {len(decoder_channels)}: {tuple(decoder_channels)}"
            )
        deepest_first = list(reversed(encoder_channels))
        in_channels = [deepest_first[0], *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o, attention)
            for i, s, o in zip(in_channels, deepest_first[1:], decoder_channels, strict=True)
        )
        self.out_channels = decoder_channels[-1]

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features`` as returned by the encoder; returns full-resolution decoder features."""
        deepest_first = list(reversed(features))
        x = deepest_first[0]
        for block, skip in zip(self.blocks, deepest_first[1:], strict=True):
            x = block(x, skip)
        return x
