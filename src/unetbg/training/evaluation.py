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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unetbg.data.coco import UnreadableImageError
from unetbg.data.sources import (
    CocoReader,
    DataSource,
    SourceReader,
    shows_nobody,
    unique_names,
)
from unetbg.edges import refine_all
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
    coco_root: str | os.PathLike | None,
    split: str = "val",
    device: str = "auto",
    threshold: float = 0.5,
    limit: int | None = None,
    batch_size: int = 8,
    should_stop: Callable[[], bool] | None = None,
    data: Sequence[str] = (),
    val_percent: int = 10,
    progress: Callable[[int, int], None] | None = None,
    image_size: int | None = None,
    flip_average: bool | None = None,
    refine_edges: bool | None = None,
) -> dict[str, Any]:
    """IoU, Dice and pixel accuracy (micro and macro) of ``checkpoint`` on ``split``.

    ``coco_root``'s ``split`` is scored, and with ``data`` (``KIND:PATH[:WEIGHT]`` specs)
    each source's validation part too (a COCO source's ``split``, a mask folder's hash
    split); the figures of each source are under ``sources``, the top-level figures are
    over all their pixels together, and ``mean_iou`` is the mean of the sources' IoUs.
    ``limit`` scores the first ``limit`` images of each source (sorted, as training
    validation does). Returns a JSON-ready dict: the figures, ``images`` scored,
    ``unreadable`` images skipped, ``baseline`` (the same figures for the all-foreground
    prediction), and what was run. ``should_stop()`` is asked before each group of images
    (cooperative cancellation); when it returns True, :class:`EvaluationStopped` is raised.
    ``progress(done, total)`` is called after each group of images. ``image_size``
    letterboxes the photos to another size than the checkpoint's (a multiple of 32),
    to measure how the model fares there; the result's ``image_size`` says which ran.
    ``flip_average`` and ``refine_edges`` override the checkpoint's test-time flip and
    edge refinement (``None``: keep what it says); the result's fields of the same
    names say which ran.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if image_size is not None and (image_size < 32 or image_size % 32):
        raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
    sources = [DataSource("coco", str(coco_root))] if coco_root is not None else []
    sources += [DataSource.parse(spec) for spec in data]
    if not sources:
        raise ValueError("nothing to evaluate on: pass a COCO folder or data sources")
    names = unique_names(sources)
    readers = [
        s.reader(split if s.kind == "coco" else "val", val_percent, n)
        for s, n in zip(sources, names, strict=True)
    ]
    started = time.perf_counter()
    torch_device = resolve_device(device)
    model, ckpt = load_model(checkpoint, device=torch_device)
    preprocessing = Preprocessing.from_dict(ckpt["preprocessing"]).overridden(
        image_size=image_size, flip_average=flip_average, refine_edges=refine_edges
    )

    meter = SegmentationMeter(threshold=threshold)
    baseline = SegmentationMeter(threshold=threshold)
    empty = EmptyPhotos(threshold)
    per_source: dict[str, dict[str, Any]] = {}
    unreadable: list[Any] = []
    total = sum(min(len(r), limit or len(r)) for r in readers)
    done = 0
    for reader in readers:
        source_meter = SegmentationMeter(threshold=threshold)
        source_baseline = SegmentationMeter(threshold=threshold)
        source_empty = EmptyPhotos(threshold)
        count = min(len(reader), limit or len(reader))
        skipped: list[Any] = []
        # A chunk of full-size images and their masks is what is held in memory at once.
        chunk = max(batch_size, 1) * 4
        for start in range(0, count, chunk):
            if should_stop is not None and should_stop():
                raise EvaluationStopped(f"stopped after {done} of {total} images")
            images, masks, ignores = [], [], []
            for index in range(start, min(start + chunk, count)):
                try:
                    image, mask, ignore = reader.load(index)
                except UnreadableImageError as exc:
                    log.warning("skipping %s image %s: %s", reader.name, reader.key(index), exc)
                    skipped.append(_key(reader, index))
                    continue
                images.append(image)
                masks.append(mask)
                ignores.append(ignore)
            done += min(start + chunk, count) - start
            if images:
                probs = predict_probabilities(
                    model, images, preprocessing, torch_device, batch_size=batch_size
                )
                probs = refine_all(probs, images, preprocessing)
                ones = [np.ones(m.shape, np.float32) for m in masks]
                for m, b in ((meter, baseline), (source_meter, source_baseline)):
                    m.update(probs, masks, ignores)
                    b.update(ones, masks, ignores)
                for e in (empty, source_empty):
                    e.update(probs, masks, ignores)
            if progress is not None:
                progress(done, total)
        unreadable += skipped
        if source_meter.count:
            per_source[reader.name] = {
                **source_meter.compute(),
                "iou_interval": list(source_meter.iou_interval()),
                "baseline": source_baseline.compute(),
                "empty": source_empty.compute(),
                "unreadable": skipped,
            }

    if not meter.count:
        raise ValueError(f"no readable images to score in {', '.join(names)}")
    result = {
        **meter.compute(),
        "iou_interval": list(meter.iou_interval()),
        "baseline": baseline.compute(),
        "empty": empty.compute(),
        "unreadable": unreadable,
        "split": split,
        "threshold": threshold,
        "checkpoint": str(Path(checkpoint)),
        "epoch": ckpt.get("epoch"),
        "image_size": preprocessing.image_size,
        "flip_average": preprocessing.flip_average,
        "refine_edges": preprocessing.refine_edges,
        "device": str(torch_device),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if len(sources) > 1 or data:
        result["sources"] = per_source
        result["mean_iou"] = sum(v["iou"] for v in per_source.values()) / len(per_source)
    return result


class EmptyPhotos:
    """How much of the photos without any person the model calls person.

    Half of COCO's photos have nobody in them, and on coco-mini val the person a model
    imagines in them (a pizza, a bear) was 42 % of all its wrong pixels
    (docs/model-card.md): IoU, pooled over all pixels, shows that only as a lower figure.
    """

    #: A photo "has a false person" when more than this share of its pixels is called one.
    NOTICEABLE = 0.01

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.shares: list[float] = []

    def update(self, probs, masks, ignores) -> None:
        for prob, mask, ignore in zip(probs, masks, ignores, strict=True):
            if shows_nobody(mask, ignore):  # then every pixel is scored
                self.shares.append(float((prob >= self.threshold).mean()))

    def compute(self) -> dict[str, Any]:
        """``images`` without people, ``with_false_person`` of them, and the mean share of
        their scored pixels called person (``false_person``; 0 when there are none)."""
        shares = self.shares
        return {
            "images": len(shares),
            "with_false_person": sum(s > self.NOTICEABLE for s in shares),
            "false_person": sum(shares) / len(shares) if shares else 0.0,
        }


def _key(reader: SourceReader, index: int) -> Any:
    """A COCO image's id as a number (as before mixed sources), a file's stem as text."""
    key = reader.key(index)
    return int(key) if isinstance(reader, CocoReader) else key
