"""Training on masks that label only some of the people in a photo.

ccp-person labels the main person of each street photo; everyone else in it is marked
background. Taught as it is, the model learns to suppress all but one central figure: the
opposite of what COCO scenes (groups, small people far away) need, and the reason that
source cost coco-mini val IoU in the ablations (docs/model-card.md).

For the samples of such a source (``TrainConfig.partial_sources``), background pixels that
the model itself calls person and that lie away from the labelled people are left out of
the loss. Within a margin around the labelled people the background stays taught, so their
outline is learnt as sharply as before; what is background further away is taught by the
fully labelled sources and by this source's pixels the model already calls background.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Width of the band kept around labelled people, as a share of the training size: 8 px at
#: 192 px, about the blur of the model's outline there, so boundary errors stay taught.
MARGIN_SHARE = 1 / 24


def unlabelled_people(
    probs: torch.Tensor,
    target: torch.Tensor,
    ignore: torch.Tensor,
    partial: torch.Tensor,
    threshold: float = 0.5,
) -> torch.Tensor:
    """``ignore`` plus, in the samples where ``partial`` is true, every background pixel
    with ``probs >= threshold`` farther than the margin from a labelled person pixel.

    ``probs``, ``target`` and ``ignore`` are ``N×1×H×W`` (``target``/``ignore`` in {0, 1}),
    ``partial`` has one flag per sample. The model's own (detached) guess decides, so what
    it learnt from fully labelled photos is not unlearnt on these; its guesses elsewhere in
    those photos are still corrected.
    """
    rows = partial.to(device=target.device, dtype=torch.bool).view(-1, 1, 1, 1)
    if not bool(rows.any()):
        return ignore
    margin = max(1, round(target.shape[-1] * MARGIN_SHARE))
    near = F.max_pool2d(target.float(), 2 * margin + 1, stride=1, padding=margin) > 0
    away = rows & (probs >= threshold) & (target == 0) & ~near
    return torch.where(away, torch.ones_like(ignore), ignore)
