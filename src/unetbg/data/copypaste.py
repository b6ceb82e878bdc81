"""Copy-paste compositing (after Ghiasi et al., "Simple Copy-Paste is a Strong Data
Augmentation Method for Instance Segmentation", CVPR 2021).

People cut out of one training photo with their mask are pasted onto another at random
scales (many of them small, as in COCO street scenes), positions and counts; the target
mask is updated with them. A model trained from random weights on photos of one big
central person learns "the big central figure"; pasting people of every size into every
kind of background (including the photos without anyone) teaches "a person" instead.

Only person pixels are pasted: a donor's unlabelled background (ccp-person's bystanders,
COCO crowd areas) never travels. A pasted pixel is labelled person and no longer ignored;
every other pixel keeps its label and its ignore flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from unetbg.data.coco import UnreadableImageError
from unetbg.data.sources import SourceReader, shows_nobody


@dataclass(frozen=True)
class PasteScale:
    """Pasted height as a share of the target's height, drawn log-uniformly (small
    people as often as large ones), and the largest upscaling of a donor."""

    low: float = 0.08
    high: float = 0.75
    max_upscale: float = 1.5
    #: Donors and pastes smaller than this (pixels high) are not worth pasting.
    min_height: int = 12


def paste_person(
    image: np.ndarray,
    mask: np.ndarray,
    ignore: np.ndarray,
    donor_image: np.ndarray,
    donor_mask: np.ndarray,
    rng: np.random.Generator,
    scale: PasteScale = PasteScale(),
) -> np.ndarray:
    """Paste the person pixels of ``donor_*`` into ``image``/``mask``/``ignore`` in place.

    Returns the boolean ``H×W`` map of the pixels pasted (all ``False`` when the donor has
    no person or would be too small).
    """
    height, width = image.shape[:2]
    pasted = np.zeros((height, width), bool)
    ys, xs = np.nonzero(donor_mask)
    if ys.size == 0:
        return pasted
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop, crop_mask = donor_image[y0:y1, x0:x1], donor_mask[y0:y1, x0:x1]
    ch, cw = crop_mask.shape
    relative = math.exp(rng.uniform(math.log(scale.low), math.log(scale.high)))
    factor = min(relative * height / ch, scale.max_upscale, 0.9 * width / cw)
    new_h, new_w = round(ch * factor), round(cw * factor)
    if new_h < scale.min_height or new_w < 2:
        return pasted
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (new_w, new_h), interpolation=interpolation)
    crop_mask = cv2.resize(crop_mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST) > 0
    if rng.random() < 0.5:
        crop, crop_mask = crop[:, ::-1], crop_mask[:, ::-1]
    # Up to a quarter of the person may hang over an edge, as people do in photos.
    top = int(rng.integers(-(new_h // 4), max(1, height - 3 * new_h // 4)))
    left = int(rng.integers(-(new_w // 4), max(1, width - 3 * new_w // 4)))
    ty0, tx0 = max(top, 0), max(left, 0)
    ty1, tx1 = min(top + new_h, height), min(left + new_w, width)
    if ty1 <= ty0 or tx1 <= tx0:
        return pasted
    region = crop_mask[ty0 - top : ty1 - top, tx0 - left : tx1 - left]
    pasted[ty0:ty1, tx0:tx1] = region
    image[pasted] = crop[ty0 - top : ty1 - top, tx0 - left : tx1 - left][region]
    mask[pasted] = 1
    ignore[pasted] = 0
    return pasted


class CopyPaste:
    """With probability ``p``, paste 1..``max_objects`` people from ``donors`` into a sample.

    ``donors`` are readers (the training parts of the person sources); a donor is drawn
    uniformly over all their images, and one without a person (a true negative) or that
    cannot be read is passed over for another draw.
    """

    def __init__(
        self,
        donors: list[SourceReader],
        p: float = 0.5,
        max_objects: int = 3,
        scale: PasteScale = PasteScale(),
        onto_empty: bool = True,
    ) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"copy-paste probability must be in [0, 1], got {p}")
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        self.donors = [d for d in donors if len(d) > 0]
        self.sizes = np.cumsum([len(d) for d in self.donors])
        self.p, self.max_objects, self.scale = p, max_objects, scale
        #: Paste into photos without anyone too? ``False`` keeps them whole, as the only
        #: samples that teach "no person here" (half of COCO's photos have none).
        self.onto_empty = onto_empty

    def _draw_donor(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
        for _ in range(8):
            flat = int(rng.integers(self.sizes[-1]))
            which = int(np.searchsorted(self.sizes, flat, side="right"))
            index = flat - (int(self.sizes[which - 1]) if which else 0)
            try:
                image, mask, _ = self.donors[which].load(index)
            except UnreadableImageError:
                continue
            if mask.any():
                return image, mask
        return None

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, ignore: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sample with people pasted in (copies; the inputs are not changed)."""
        keep_whole = not self.onto_empty and shows_nobody(mask, ignore)
        if not self.donors or keep_whole or rng.random() >= self.p:
            return image, mask, ignore
        image, mask, ignore = image.copy(), mask.copy(), ignore.copy()
        for _ in range(int(rng.integers(1, self.max_objects + 1))):
            donor = self._draw_donor(rng)
            if donor is not None:
                paste_person(image, mask, ignore, *donor, rng, self.scale)
        return image, mask, ignore
