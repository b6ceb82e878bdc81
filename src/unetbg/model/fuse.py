"""Inference-time rewrite of a trained :class:`AttentionUNet`: same outputs, less work.

:func:`fuse_for_inference` returns a new module (the trained model is not touched, and
neither is the checkpoint format) in which

* every BatchNorm that follows a convolution is folded into that convolution's weights
  and bias (encoder stem and blocks, downsample branches, decoder convolutions, the
  attention gates' projections): one pass over memory instead of two;
* the ReLU after a folded convolution runs in place on its output;
* each decoder block's ``conv(cat([upsample(x), skip]))`` becomes
  ``conv_x(upsample(x)) + conv_skip(skip)`` (the weights split along their input
  channels): no channels-last concatenation (a strided copy of both inputs, ~7 % of
  the forward pass on the CPU), and the last block's 3-channel image skip gets its own
  small convolution instead of forcing 32 + 3 = 35 input channels, a slow path in
  oneDNN. (Padding 35 to 40 channels with zeros was measured too: slower, because the
  padded concatenation costs more than it saves.)
* ``conv_x(upsample(x))``, a 3×3 convolution of a nearest-upsampled map, runs as one
  stride-2 4×4 transposed convolution on the coarse map
  (:func:`upsample_conv_as_transposed`): 16 instead of 36 multiply-adds per input
  pixel, and the upsampled map is never made.

Measured step by step in docs/performance.md.

The result is a plain ``nn.Module`` with the same ``forward(x) -> {"mask": logits}``
contract (the reconstruction head is dropped: inference never uses it). Outputs agree
with the unfused model to float32 rounding (tests check max |Δprob| ≤ 1e-3 on real
photos). It is meant for ``eval()`` use only; it has no BatchNorm left to train.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from unetbg.model.attention import AttentionGate
from unetbg.model.net import AttentionUNet


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution computing ``bn(conv(x))`` with ``bn`` in eval mode (running stats)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight.detach() * scale.view(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def split_input_channels(conv: nn.Conv2d, first: int) -> tuple[nn.Conv2d, nn.Conv2d]:
    """Two convolutions whose outputs sum to ``conv``'s: on input channels ``[:first]``
    (with the bias) and on ``[first:]`` (without)."""
    parts = []
    for lo, hi, bias in ((0, first, True), (first, conv.in_channels, False)):
        part = nn.Conv2d(
            hi - lo,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            bias=bias and conv.bias is not None,
        ).to(conv.weight.device)
        with torch.no_grad():
            part.weight.copy_(conv.weight[:, lo:hi])
            if part.bias is not None:
                part.bias.copy_(conv.bias)
        parts.append(part)
    return parts[0], parts[1]


class FusedBasicBlock(nn.Module):
    """torchvision's ``BasicBlock`` with its batch norms folded."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv1 = fold_bn(block.conv1, block.bn1)
        self.conv2 = fold_bn(block.conv2, block.bn2)
        self.downsample = (
            fold_bn(block.downsample[0], block.downsample[1])
            if block.downsample is not None
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv2(F.relu(self.conv1(x), inplace=True))
        return F.relu(out.add_(identity), inplace=True)


class FusedEncoder(nn.Module):
    """The ResNet encoder, folded; returns the same feature pyramid."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.conv1 = fold_bn(encoder.conv1, encoder.bn1)
        self.maxpool = encoder.maxpool
        self.layers = nn.ModuleList(
            nn.Sequential(*(FusedBasicBlock(b) for b in layer))
            for layer in (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [x, F.relu(self.conv1(x), inplace=True)]
        y = self.maxpool(features[-1])
        for layer in self.layers:
            y = layer(y)
            features.append(y)
        return features


class FusedGate(nn.Module):
    """:class:`AttentionGate` with its projections' batch norms folded."""

    def __init__(self, gate: AttentionGate) -> None:
        super().__init__()
        self.theta = fold_bn(gate.theta[0], gate.theta[1])
        self.phi = fold_bn(gate.phi[0], gate.phi[1])
        self.psi = gate.psi

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        theta = self.theta(skip)
        phi = self.phi(gate)
        if phi.shape[-2:] != theta.shape[-2:]:
            phi = F.interpolate(phi, size=theta.shape[-2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(theta.add_(phi), inplace=True)))
        alpha = F.interpolate(alpha, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return skip * alpha


#: Nearest ×2 upsampling followed by a 3-tap kernel ``[a, b, c]`` (padding 1) equals a
#: stride-2 transposed convolution with the 4-tap kernel ``[c, b + c, a + b, a]``.
_UPSAMPLE_TAPS = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.float32)


def upsample_conv_as_transposed(conv: nn.Conv2d) -> nn.ConvTranspose2d:
    """A transposed convolution computing ``conv(nearest_upsample_x2(x))`` exactly.

    Each output pixel of the upsampled 3×3 convolution reads only 2×2 distinct input
    pixels, so the equivalent stride-2 4×4 transposed convolution does 16 instead of 36
    multiply-adds per input pixel and never materialises the upsampled tensor.
    """
    if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1):
        raise ValueError("only 3×3 convolutions with padding 1 and stride 1")
    taps = _UPSAMPLE_TAPS.to(conv.weight)
    kernel = torch.einsum("pa,ocab,qb->ocpq", taps, conv.weight.detach(), taps)
    deconv = nn.ConvTranspose2d(
        conv.in_channels,
        conv.out_channels,
        kernel_size=4,
        stride=2,
        padding=1,
        bias=conv.bias is not None,
    ).to(conv.weight.device)
    with torch.no_grad():
        deconv.weight.copy_(kernel.transpose(0, 1))
        if conv.bias is not None:
            deconv.bias.copy_(conv.bias)
    return deconv


class FusedDecoderBlock(nn.Module):
    """A decoder block, folded; ``split`` also removes the concatenation and upsampling.

    ``conv(cat([up(x), skip]))`` equals ``conv_x(up(x)) + conv_skip(skip)`` with the
    weights split along their input channels. That drops the channels-last
    concatenation (a strided copy of both inputs, 7 % of the forward pass), gives the
    3-channel image skip its own small convolution instead of forcing 35 input
    channels on oneDNN, and lets ``conv_x(up(x))`` run as one transposed convolution
    on the coarse grid (:func:`upsample_conv_as_transposed`).
    """

    def __init__(
        self, block: nn.Module, x_channels: int, split: bool = True, transposed: bool = True
    ) -> None:
        super().__init__()
        attention = block.attention.attention
        self.gate = FusedGate(attention) if isinstance(attention, AttentionGate) else None
        conv1 = fold_bn(block.conv1[0], block.conv1[1])
        self.split = split
        if split:
            self.conv1_x, self.conv1_skip = split_input_channels(conv1, x_channels)
            # conv1_x stays for skips that are not exactly twice x's size (never, as the
            # input is padded to a multiple of 32) and for transposed=False.
            self.conv1_up = upsample_conv_as_transposed(self.conv1_x) if transposed else None
        else:
            self.conv1 = conv1
        self.conv2 = fold_bn(block.conv2[0], block.conv2[1])

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            skip = self.gate(skip, x)
        size = skip.shape[-2:]
        if not self.split:
            x = F.interpolate(x, size=size, mode="nearest")
            y = self.conv1(torch.cat([x, skip], dim=1))
        elif self.conv1_up is not None and size == (2 * x.shape[-2], 2 * x.shape[-1]):
            y = self.conv1_up(x).add_(self.conv1_skip(skip))
        else:
            x = F.interpolate(x, size=size, mode="nearest")
            y = self.conv1_x(x).add_(self.conv1_skip(skip))
        return F.relu(self.conv2(F.relu(y, inplace=True)), inplace=True)


class FusedAttentionUNet(nn.Module):
    """What :func:`fuse_for_inference` returns; ``forward(x) -> {"mask": logits}``."""

    def __init__(self, model: AttentionUNet, split: bool = True, transposed: bool = True) -> None:
        super().__init__()
        self.output_stride = model.encoder.output_stride
        self.encoder = FusedEncoder(model.encoder)
        # What each block receives from below: the deepest feature, then each block's output.
        x_channels = [model.encoder.out_channels[-1], *model.config.decoder_channels[:-1]]
        self.blocks = nn.ModuleList(
            FusedDecoderBlock(b, c, split, transposed)
            for b, c in zip(model.decoder.blocks, x_channels, strict=True)
        )
        self.mask_head = copy.deepcopy(model.mask_head)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an N×3×H×W tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.output_stride, -w % self.output_stride
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "constant"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        features = self.encoder(x)
        y = features[-1]
        for block, skip in zip(self.blocks, reversed(features[:-1]), strict=True):
            y = block(y, skip)
        return {"mask": self.mask_head(y)[..., :h, :w]}


@torch.no_grad()
def fuse_for_inference(
    model: AttentionUNet, split: bool = True, transposed: bool = True
) -> FusedAttentionUNet:
    """A folded copy of ``model`` for inference (``model`` itself is left unchanged).

    ``model``'s batch norms must hold trained running statistics (as after loading a
    checkpoint); the copy is in eval mode on ``model``'s device. For measuring each
    step alone: ``split=False`` keeps the decoder's concatenations (folding only),
    ``transposed=False`` splits them but keeps upsampling + 3×3 convolution.
    """
    if not isinstance(model, AttentionUNet):
        raise TypeError(f"expected an AttentionUNet, got {type(model).__name__}")
    fused = FusedAttentionUNet(model, split, transposed).eval()
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused
