"""The attention U-Net and its factory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unetbg.model.config import ModelConfig
from unetbg.model.decoder import UnetDecoder
from unetbg.model.encoder import get_encoder
from unetbg.model.heads import ReconstructionHead, SegmentationHead


class AttentionUNet(nn.Module):
    """ResNet encoder + attention-gated U-Net decoder + mask head (+ optional reconstruction).

    ``forward(x)`` takes an ``N×3×H×W`` normalised float tensor of any ``H, W`` and returns a
    dict with ``"mask"`` (``N×1×H×W`` logits) and, when ``config.reconstruction`` is set,
    ``"reconstruction"`` (``N×3×H×W`` person-only RGB in [0, 1]).

    Any input size works: the input is padded at the bottom and right to the next multiple of
    the encoder's output stride (32) — reflect padding, or zero padding when the input is too
    small to reflect — and the outputs are cropped back to ``H×W``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = get_encoder(config.encoder, config.encoder_weights)
        self.decoder = UnetDecoder(
            self.encoder.out_channels, config.decoder_channels, config.attention
        )
        self.mask_head = SegmentationHead(self.decoder.out_channels, 1)
        self.reconstruction_head = (
            ReconstructionHead(self.decoder.out_channels) if config.reconstruction else None
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{"mask": logits[, "reconstruction": rgb]}`` at the input's size."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an N×3×H×W tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        stride = self.encoder.output_stride
        pad_h, pad_w = -h % stride, -w % stride
        if pad_h or pad_w:
            # Reflect needs the pad to be smaller than the side; tiny inputs fall back to zeros.
            mode = "reflect" if pad_h < h and pad_w < w else "constant"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        features = self.decoder(self.encoder(x))
        outputs = {"mask": self.mask_head(features)[..., :h, :w]}
        if self.reconstruction_head is not None:
            outputs["reconstruction"] = self.reconstruction_head(features)[..., :h, :w]
        return outputs


def create_model(config: ModelConfig | None = None) -> AttentionUNet:
    """Build an ``AttentionUNet`` from ``config`` (defaults when ``None``).

    Raises ``ValueError`` for unknown encoder/attention names (listing the valid ones) and
    ``EncoderWeightsError`` when ``config.encoder_weights`` cannot be loaded.
    """
    return AttentionUNet(config or ModelConfig())
