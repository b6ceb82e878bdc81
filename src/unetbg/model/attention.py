"""Attention on skip connections, chosen by name (``"gate"`` or ``None``).

The additive attention gate follows Oktay et al. 2018, "Attention U-Net: Learning Where to Look
for the Pancreas": the gating signal ``g`` comes from the coarser decoder level, the skip
features ``x`` are projected at the gate's resolution, ``alpha = sigmoid(psi(relu(Wx x + Wg g)))``
is resampled to the skip's resolution and scales the skip features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AttentionGate(nn.Module):
    """Additive attention gate scaling ``skip`` by coefficients computed from ``skip`` and ``gate``.

    ``skip``: ``N×skip_channels×H×W``; ``gate``: ``N×gate_channels×h×w`` from the coarser level
    (normally ``h = H/2``). Returns ``skip * alpha`` with ``alpha`` in (0, 1), one coefficient per
    pixel shared by all channels.
    """

    def __init__(
        self, skip_channels: int, gate_channels: int, inter_channels: int | None = None
    ) -> None:
        super().__init__()
        inter = inter_channels or max(skip_channels // 2, 8)
        # Strided 2x2 projection brings the skip to the gate's (coarser) grid, as in the paper.
        self.theta = nn.Sequential(
            nn.Conv2d(skip_channels, inter, kernel_size=2, stride=2, bias=False),
            nn.BatchNorm2d(inter),
        )
        self.phi = nn.Sequential(
            nn.Conv2d(gate_channels, inter, kernel_size=1, bias=False),
            nn.BatchNorm2d(inter),
        )
        self.psi = nn.Conv2d(inter, 1, kernel_size=1, bias=True)

    def coefficients(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Attention coefficients ``N×1×H×W`` in (0, 1) at the skip's resolution."""
        theta = self.theta(skip)
        phi = self.phi(gate)
        if phi.shape[-2:] != theta.shape[-2:]:
            phi = F.interpolate(phi, size=theta.shape[-2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))
        return F.interpolate(alpha, size=skip.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Return the gated skip features (same shape as ``skip``)."""
        return skip * self.coefficients(skip, gate)


ATTENTIONS: dict[str, type[nn.Module]] = {"gate": AttentionGate}


class Attention(nn.Module):
    """Skip-connection attention by name: ``"gate"`` -> ``AttentionGate``, ``None`` -> identity.

    ``forward(skip, gate)`` always takes both tensors so decoder code does not branch.
    Unknown names raise ``ValueError`` listing the valid ones.
    """

    def __init__(self, name: str | None, skip_channels: int, gate_channels: int) -> None:
        super().__init__()
        if name is None:
            self.attention: nn.Module = nn.Identity()
        elif name in ATTENTIONS:
            self.attention = ATTENTIONS[name](skip_channels, gate_channels)
        else:
            valid = [*sorted(ATTENTIONS), None]
            raise ValueError(f"unknown attention {name!r}; valid values are {valid}")

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Return ``skip`` re-weighted by the attention (unchanged for ``None``)."""
        if isinstance(self.attention, nn.Identity):
            return skip
        return self.attention(skip, gate)
