"""Training loss: BCE + soft Dice on the mask, optional L1 on the reconstruction."""

from __future__ import annotations

import torch
from torch import nn

from unetbg.model._functional import masked_bce_with_logits, masked_l1, soft_dice_loss


class CompositeLoss(nn.Module):
    """``bce_weight * BCE + dice_weight * Dice + recon_weight * L1``.

    ``forward(outputs, target, ignore=None, image=None) -> (total, parts)``:

    - ``outputs``: the model's dict (``"mask"`` logits ``N×1×H×W``, optional
      ``"reconstruction"`` ``N×3×H×W`` in [0, 1]);
    - ``target`` / ``ignore``: ``N×1×H×W`` in {0, 1}; a pixel with ``ignore=1`` is removed from
      every term (it contributes neither value nor gradient);
    - ``image``: the un-normalised ``N×3×H×W`` [0, 1] image; the reconstruction target is
      ``image * target`` (the person only, black elsewhere).

    ``parts`` holds detached ``"bce"``, ``"dice"`` and ``"recon"`` values (``recon`` is 0 when
    the reconstruction term is not computed). The L1 term is computed whenever the outputs
    contain a reconstruction and ``image`` is given; ``recon_weight > 0`` requires both.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        recon_weight: float = 0.0,
        dice_smooth: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("bce_weight", bce_weight),
            ("dice_weight", dice_weight),
            ("recon_weight", recon_weight),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if dice_smooth <= 0:
            raise ValueError(f"dice_smooth must be > 0, got {dice_smooth}")
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.recon_weight = float(recon_weight)
        self.dice_smooth = float(dice_smooth)

    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        target: torch.Tensor,
        ignore: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return ``(total, {"bce", "dice", "recon"})``; see the class docstring."""
        logits = outputs["mask"]
        if target.shape != logits.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} != mask logits shape {tuple(logits.shape)}"
            )
        target = target.to(logits.dtype)
        if ignore is None:
            valid = torch.ones_like(logits)
        else:
            if ignore.shape != logits.shape:
                raise ValueError(
                    f"ignore shape {tuple(ignore.shape)} != mask logits shape {tuple(logits.shape)}"
                )
            valid = 1.0 - ignore.to(logits.dtype)
        # The loss is computed in float32 even under autocast: sums over millions of pixels.
        logits, target, valid = logits.float(), target.float(), valid.float()

        bce = masked_bce_with_logits(logits, target, valid)
        dice = soft_dice_loss(torch.sigmoid(logits), target, valid, self.dice_smooth)
        total = self.bce_weight * bce + self.dice_weight * dice

        recon = logits.new_zeros(())
        reconstruction = outputs.get("reconstruction")
        if self.recon_weight > 0 and (reconstruction is None or image is None):
            raise ValueError(
                "recon_weight > 0 needs outputs['reconstruction'] (ModelConfig.reconstruction="
                "True) and the un-normalised image"
            )
        if reconstruction is not None and image is not None:
            if image.shape != reconstruction.shape:
                raise ValueError(
                    f"image shape {tuple(image.shape)} != reconstruction shape "
                    f"{tuple(reconstruction.shape)}"
                )
            recon = masked_l1(reconstruction.float(), image.float() * target, valid)
            total = total + self.recon_weight * recon
        return total, {"bce": bce.detach(), "dice": dice.detach(), "recon": recon.detach()}
