"""Score a checkpoint on a COCO split at each image's original resolution.

Validation during training scores letterboxed tensors; this is the number a user sees:
the probability map is mapped back through the letterbox to the photo's own size
(``predict_probabilities``) and compared with the full-size COCO person mask, crowd
pixels ignored. The all-foreground baseline (every pixel called "person") is scored on
the same pixels so the figures have a floor to compare with.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from unetbg.data import CocoPersons, PersonFilter
from unetbg.data.coco import UnreadableImageError
from unetbg.model import (
    Preprocessing,
    SegmentationMeter,
    load_model,
    predict_probabilities,
    resolve_device,
)

log = logging.getLogger(__name__)


class EvaluationStopped(Exception):
    """``should_stop()`` returned True: the evaluation ended early, without figures."""


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    coco_root: str | os.PathLike,
    split: str = "val",
    device: str = "auto",
    threshold: float = 0.5,
    limit: int | None = None,
    batch_size: int = 8,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """IoU, Dice and pixel accuracy (micro and macro) of ``checkpoint`` on ``split``.

    ``limit`` scores the first ``limit`` images (sorted ids, as training validation does).
    Returns a JSON-ready dict: the figures, ``images`` scored, ``unreadable`` ids skipped,
    ``baseline`` (the same figures for the all-foreground prediction), and what was run.
    ``should_stop()`` is asked before each group of images (cooperative cancellation);
    when it returns True, :class:`EvaluationStopped` is raised.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    started = time.perf_counter()
    torch_device = resolve_device(device)
    model, ckpt = load_model(checkpoint, device=torch_device)
    preprocessing = Preprocessing.from_dict(ckpt["preprocessing"])
    persons = CocoPersons(coco_root, split, PersonFilter(crowd="ignore"))
    image_ids = persons.image_ids if limit is None else persons.image_ids[:limit]

    meter = SegmentationMeter(threshold=threshold)
    baseline = SegmentationMeter(threshold=threshold)
    unreadable: list[int] = []
    # A chunk of full-size images and their masks is what is held in memory at once.
    chunk = max(batch_size, 1) * 4
    for start in range(0, len(image_ids), chunk):
        if should_stop is not None and should_stop():
            raise EvaluationStopped(f"stopped after {start} of {len(image_ids)} images")
        images, masks, ignores = [], [], []
        for image_id in image_ids[start : start + chunk]:
            try:
                images.append(persons.read_image(image_id))
            except UnreadableImageError as exc:
                log.warning("skipping image %d: %s", image_id, exc)
                unreadable.append(image_id)
                continue
            mask, ignore = persons.masks(image_id)
            masks.append(mask)
            ignores.append(ignore)
        if not images:
            continue
        probs = predict_probabilities(
            model, images, preprocessing, torch_device, batch_size=batch_size
        )
        meter.update(probs, masks, ignores)
        baseline.update([np.ones(m.shape, np.float32) for m in masks], masks, ignores)

    if len(unreadable) == len(image_ids):
        raise ValueError(f"no readable images to score in {split!r} under {coco_root}")
    return {
        **meter.compute(),
        "baseline": baseline.compute(),
        "unreadable": unreadable,
        "split": split,
        "threshold": threshold,
        "checkpoint": str(Path(checkpoint)),
        "epoch": ckpt.get("epoch"),
        "device": str(torch_device),
        "seconds": round(time.perf_counter() - started, 3),
    }
