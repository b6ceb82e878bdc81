"""A teacher's soft masks as a second target while fine-tuning (``--distill-from``).

Fine-tuning the shipped model on people moved onto new backdrops raised studio-val and lost
people in COCO scenes that the shipped model found: dark, cut by the frame, behind things
(docs/model-card.md). Labels alone do not hold that, because the labels of those photos
were there all along; what was lost is how the shipped model read them. So on the samples
that keep their own photo (not swapped onto a backdrop) the student is also taught the
teacher's probabilities, pixel by pixel, while the swapped samples teach the new backdrops
from their labels alone: there the teacher is what is being corrected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unetbg.model._functional import masked_bce_with_logits


class Distiller:
    """The frozen teacher and which samples of a batch it teaches.

    ``sources``: the indices (the samples' ``source`` tag) whose unswapped samples are
    taught; ``None``: every sample that was not swapped and shows a person. A batch without ``source`` tags (a
    run on one COCO root) is taught whole.
    """

    def __init__(self, teacher: nn.Module, weight: float, sources: Sequence[int] | None = None):
        if weight < 0:
            raise ValueError(f"distill weight must be >= 0, got {weight}")
        self.teacher = teacher.eval().requires_grad_(False)
        self.weight = float(weight)
        self.sources = None if sources is None else sorted(set(sources))

    def picked(self, batch: dict) -> torch.Tensor:
        """One flag per sample of ``batch``: does the teacher's term apply to it?

        Never on a sample whose label holds no person: there the label is certain, and the
        false people the teacher calls on such photos are what the student must not learn.
        """
        pick = batch["mask"].flatten(1).amax(1) > 0
        if "swapped" in batch:
            pick &= ~torch.as_tensor(batch["swapped"], dtype=torch.bool)
        if self.sources is not None and "source" in batch:
            pick &= torch.isin(torch.as_tensor(batch["source"]), torch.tensor(self.sources))
        return pick

    def loss(
        self, batch: dict, image: torch.Tensor, logits: torch.Tensor, ignore: torch.Tensor
    ) -> torch.Tensor:
        """Mean BCE of the student's ``logits`` against the teacher's probabilities over
        the picked samples' pixels that are not ``ignore`` (letterbox padding, crowds);
        0 when the batch has no picked sample. The teacher runs on those samples only."""
        pick = self.picked(batch).to(image.device)
        if not bool(pick.any()):
            return logits.new_zeros((), dtype=torch.float32)
        with torch.no_grad():
            soft = torch.sigmoid(self.teacher(image[pick])["mask"].float())
        valid = 1.0 - ignore[pick].float()
        return masked_bce_with_logits(logits[pick].float(), soft, valid)
