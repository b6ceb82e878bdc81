"""Segmentation metrics from per-image confusion counts (tp, fp, fn, tn).

Definitions (over pixels that are not ignored):

- IoU = tp / (tp + fp + fn); Dice = 2tp / (2tp + fp + fn); pixel accuracy = (tp + tn) / valid.
- micro: counts are summed over all images first, then the ratio is taken;
  macro: the ratio is taken per image, then averaged over images.
- Empty union: when an image has no person in the target *and* none predicted, its IoU and Dice
  are 1 (a correct "nobody here" answer). The same rule applies to the micro figures when the
  whole set has no positive pixel at all.
- An image whose pixels are all ignored has no valid pixel: it is counted in ``images`` but
  left out of the macro averages (it adds nothing to the micro counts either). Pixel accuracy
  with no valid pixel at all (micro, or macro when every image is fully ignored) is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def confusion(
    pred: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image ``(tp, fp, fn, tn)`` int64 tensors of shape ``N``.

    ``pred`` and ``target`` are binary ``N×1×H×W`` (or ``N×H×W``) tensors (bool or {0, 1});
    pixels where ``ignore`` is nonzero are not counted.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.ndim < 2:
        raise ValueError(f"expected N×…×H×W tensors, got shape {tuple(pred.shape)}")
    p = pred.bool().flatten(1)
    t = target.bool().flatten(1)
    if ignore is None:
        valid = torch.ones_like(p)
    else:
        if ignore.shape != pred.shape:
            raise ValueError(
                f"ignore shape {tuple(ignore.shape)} != pred shape {tuple(pred.shape)}"
            )
        valid = ~ignore.bool().flatten(1)
    tp = (p & t & valid).sum(1)
    fp = (p & ~t & valid).sum(1)
    fn = (~p & t & valid).sum(1)
    tn = (~p & ~t & valid).sum(1)
    return tp, fp, fn, tn


def iou_score(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """``tp / (tp + fp + fn)`` elementwise, 1 where the union is empty."""
    union = (tp + fp + fn).double()
    return torch.where(union > 0, tp.double() / union.clamp_min(1), torch.ones_like(union))


def dice_score(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """``2tp / (2tp + fp + fn)`` elementwise, 1 where the union is empty."""
    denom = (2 * tp + fp + fn).double()
    return torch.where(denom > 0, 2 * tp.double() / denom.clamp_min(1), torch.ones_like(denom))


def pixel_accuracy(
    tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, tn: torch.Tensor
) -> torch.Tensor:
    """``(tp + tn) / (tp + fp + fn + tn)`` elementwise, NaN where no pixel is valid."""
    total = (tp + fp + fn + tn).double()
    return torch.where(
        total > 0, (tp + tn).double() / total.clamp_min(1), torch.full_like(total, float("nan"))
    )


#: Draws of photos behind :meth:`SegmentationMeter.iou_interval`.
INTERVAL_RESAMPLES = 2000


def _as_batch(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
    return tensor.unsqueeze(0)


class SegmentationMeter:
    """Accumulates confusion counts over batches and reports micro and macro metrics.

    ``update(probs, target, ignore=None)`` takes ``N×1×H×W`` tensors, or lists of ``H×W``
    numpy arrays/tensors (sizes may differ between images). ``probs >= threshold`` is the
    prediction. ``compute()`` returns ``iou``, ``dice``, ``pixel_accuracy`` (micro),
    ``iou_macro``, ``dice_macro``, ``pixel_accuracy_macro`` and ``images``; see the module
    docstring for the empty-union and all-ignored rules.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._counts: list[torch.Tensor] = []

    def update(
        self,
        probs: torch.Tensor | Sequence[np.ndarray | torch.Tensor],
        target: torch.Tensor | Sequence[np.ndarray | torch.Tensor],
        ignore: torch.Tensor | Sequence[np.ndarray | torch.Tensor] | None = None,
    ) -> None:
        """Add a batch (tensors ``N×1×H×W``) or a list of ``H×W`` arrays."""
        if isinstance(probs, torch.Tensor):
            if not isinstance(target, torch.Tensor) or (
                ignore is not None and not isinstance(ignore, torch.Tensor)
            ):
                raise TypeError("probs is a tensor: target and ignore must be tensors too")
            self._add(probs, target, ignore)
            return
        if len(probs) != len(target) or (ignore is not None and len(ignore) != len(probs)):
            raise ValueError(
                f"got {len(probs)} predictions, {len(target)} targets and "
                f"{'no' if ignore is None else len(ignore)} ignore masks; lengths must match"
            )
        for i, (p, t) in enumerate(zip(probs, target, strict=True)):
            if np.ndim(p) != 2:
                raise ValueError(f"item {i}: expected an H×W array, got shape {np.shape(p)}")
            self._add(_as_batch(p), _as_batch(t), None if ignore is None else _as_batch(ignore[i]))

    def _add(self, probs: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None) -> None:
        tp, fp, fn, tn = confusion(probs >= self.threshold, target, ignore)
        self._counts.append(torch.stack([tp, fp, fn, tn], dim=1).cpu())

    @property
    def count(self) -> int:
        """Images added so far."""
        return sum(int(c.shape[0]) for c in self._counts)

    def compute(self) -> dict[str, float | int]:
        """Metrics over everything accumulated; ``ValueError`` when nothing was added."""
        if not self._counts:
            raise ValueError("SegmentationMeter.compute() called before any update()")
        counts = torch.cat(self._counts)
        tp, fp, fn, tn = counts.unbind(1)
        total = counts.sum(0)
        has_pixels = (tp + fp + fn + tn) > 0
        t_tp, t_fp, t_fn, t_tn = total.unbind(0)

        def macro(values: torch.Tensor) -> float:
            values = values[has_pixels]
            return float(values.mean()) if values.numel() else float("nan")

        return {
            "iou": float(iou_score(t_tp, t_fp, t_fn)),
            "dice": float(dice_score(t_tp, t_fp, t_fn)),
            "pixel_accuracy": float(pixel_accuracy(t_tp, t_fp, t_fn, t_tn)),
            "iou_macro": macro(iou_score(tp, fp, fn)),
            "dice_macro": macro(dice_score(tp, fp, fn)),
            "pixel_accuracy_macro": macro(pixel_accuracy(tp, fp, fn, tn)),
            "images": int(counts.shape[0]),
        }

    def low_iou_images(self, limit: float) -> int:
        """How many of the images with a person (any labelled pixel) scored an IoU of
        their own below ``limit``: the photos where the person was all but missed."""
        if not self._counts:
            return 0
        tp, fp, fn, _ = torch.cat(self._counts).unbind(1)
        with_person = (tp + fn) > 0
        return int(((iou_score(tp, fp, fn) < limit) & with_person).sum())

    def iou_interval(
        self, level: float = 0.9, resamples: int = INTERVAL_RESAMPLES, seed: int = 0
    ) -> tuple[float, float]:
        """Bootstrap interval of the micro IoU over the images added.

        The images are drawn again with replacement ``resamples`` times and the pooled IoU
        of each draw taken: the central ``level`` share of those is how far the figure could
        move on another set of as many photos like these. On 79 photos it is about ±0.09
        (docs/model-card.md), so two models closer than that are not told apart by them.
        Seeded, so the same counts always give the same interval.
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        if not self._counts:
            raise ValueError("SegmentationMeter.iou_interval() called before any update()")
        counts = torch.cat(self._counts)[:, :3].numpy()  # tp, fp, fn per image
        rng = np.random.default_rng(seed)
        draws = []
        # In blocks, so a large validation set never needs resamples × images counts at once.
        for block in range(0, resamples, 200):
            size = min(200, resamples - block)
            picks = rng.integers(0, len(counts), size=(size, len(counts)))
            tp, fp, fn = counts[picks].sum(axis=1).T
            draws.append(iou_score(*(torch.from_numpy(v) for v in (tp, fp, fn))).numpy())
        low, high = np.quantile(np.concatenate(draws), [(1 - level) / 2, (1 + level) / 2])
        return float(low), float(high)
