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
    group_by: Sequence[str] = (),
    alpha_curve: bool | None = None,
) -> dict[str, Any]:
    """IoU, Dice and pixel accuracy (micro and macro) of ``checkpoint`` on ``split``.

    ``coco_root``'s ``split`` is scored, and with ``data`` (``KIND:PATH[:WEIGHT]`` specs)
    each source's validation part too (a COCO source's ``split``, a mask folder's hash
    split); the figures of each source are under ``sources``, the top-level figures are
    over all their pixels together, and ``mean_iou`` is the mean of the sources' IoUs.
    ``limit`` scores the first ``limit`` images of each source (sorted, as training
    validation does). Returns a JSON-ready dict: the figures, ``images`` scored,
    ``unreadable`` images skipped, ``baseline`` (the same figures for the all-foreground
    prediction), ``empty`` and ``alpha`` (:class:`EmptyPhotos`, :class:`AlphaFigures`),
    ``low_iou`` (photos with people scored below :data:`LOW_IOU`), and what was run.
    ``group_by`` names columns of a mask folder's ``manifest.tsv`` (first column
    ``name``, as ``studio-val`` has; ``a,b`` for pairs): that source's figures then also
    come per value, under ``groups``. ``should_stop()`` is asked before each group of
    images (cooperative cancellation); when it returns True, :class:`EvaluationStopped` is
    raised. ``progress(done, total)`` is called after each group of images.
    ``image_size`` letterboxes the photos to another size than the checkpoint's (a
    multiple of 32), to measure how the model fares there; the result's ``image_size``
    says which ran. ``flip_average``, ``refine_edges`` and ``alpha_curve`` override the
    checkpoint's test-time flip, edge refinement and alpha curve (``None``: keep what it
    says); the result's fields of the same names say which ran.
    """
    _check_arguments(threshold, limit, batch_size, image_size)
    readers = _readers(coco_root, data, split, val_percent)
    started = time.perf_counter()
    torch_device = resolve_device(device)
    model, ckpt = load_model(checkpoint, device=torch_device)
    preprocessing = Preprocessing.from_dict(ckpt["preprocessing"]).overridden(
        image_size=image_size,
        flip_average=flip_average,
        refine_edges=refine_edges,
        alpha_curve=alpha_curve,
    )

    def predict(images: list[np.ndarray]) -> list[np.ndarray]:
        probs = predict_probabilities(
            model, images, preprocessing, torch_device, batch_size=batch_size
        )
        return refine_all(probs, images, preprocessing)

    walk = _Walk(sum(min(len(r), limit or len(r)) for r in readers), should_stop, progress)
    overall, per_source = _score(readers, walk, predict, threshold, group_by, limit, batch_size)
    result = {
        **overall.figures(),
        "split": split,
        "threshold": threshold,
        "checkpoint": str(Path(checkpoint)),
        "epoch": ckpt.get("epoch"),
        "image_size": preprocessing.image_size,
        "flip_average": preprocessing.flip_average,
        "refine_edges": preprocessing.refine_edges,
        "alpha_curve": preprocessing.curve_points(),
        "device": str(torch_device),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if len(readers) > 1 or data:
        result["sources"] = per_source
        result["mean_iou"] = sum(v["iou"] for v in per_source.values()) / len(per_source)
    return result


def _score(
    readers: list[SourceReader],
    walk: _Walk,
    predict: Callable[[list[np.ndarray]], list[np.ndarray]],
    threshold: float,
    group_by: Sequence[str],
    limit: int | None,
    batch_size: int,
) -> tuple[Tally, dict[str, dict[str, Any]]]:
    """The pooled tally over every source, and each source's figures; refuses a run in
    which no image could be read."""
    overall = Tally(threshold)
    per_source: dict[str, dict[str, Any]] = {}
    for reader in readers:
        tally = Tally(threshold, _groups(reader, group_by))
        for keys, images, masks, ignores, skipped in walk.chunks(reader, limit, batch_size * 4):
            tally.unreadable += skipped
            if images:
                probs = predict(images)
                for t in (overall, tally):
                    t.add(keys, probs, masks, ignores)
        overall.unreadable += tally.unreadable
        if tally.meter.count:
            per_source[reader.name] = tally.figures()
    if not overall.meter.count:
        names = ", ".join(r.name for r in readers)
        raise ValueError(f"no readable images to score in {names}")
    return overall, per_source


def _check_arguments(
    threshold: float, limit: int | None, batch_size: int, image_size: int | None
) -> None:
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if image_size is not None and (image_size < 32 or image_size % 32):
        raise ValueError(f"image_size must be a multiple of 32, got {image_size}")


def _readers(
    coco_root: str | os.PathLike | None, data: Sequence[str], split: str, val_percent: int
) -> list[SourceReader]:
    """One reader per source: a COCO folder's ``split``, a mask folder's val part."""
    sources = [DataSource("coco", str(coco_root))] if coco_root is not None else []
    sources += [DataSource.parse(spec) for spec in data]
    if not sources:
        raise ValueError("nothing to evaluate on: pass a COCO folder or data sources")
    return [
        s.reader(split if s.kind == "coco" else "val", val_percent, n)
        for s, n in zip(sources, unique_names(sources), strict=True)
    ]


class _Walk:
    """The images of each reader in chunks (what is held in memory at once), with the
    caller's cancellation and progress between chunks."""

    def __init__(self, total: int, should_stop, progress) -> None:
        self.total, self.done = total, 0
        self.should_stop, self.progress = should_stop, progress

    def chunks(self, reader: SourceReader, limit: int | None, size: int):
        """``(keys, images, masks, ignores, skipped)`` per chunk of ``reader``'s first
        ``limit`` images; unreadable ones are logged and only their keys listed."""
        count = min(len(reader), limit or len(reader))
        for start in range(0, count, size):
            if self.should_stop is not None and self.should_stop():
                raise EvaluationStopped(f"stopped after {self.done} of {self.total} images")
            batch: tuple[list, ...] = ([], [], [], [], [])
            for index in range(start, min(start + size, count)):
                try:
                    loaded = reader.load(index)
                except UnreadableImageError as exc:
                    log.warning("skipping %s image %s: %s", reader.name, reader.key(index), exc)
                    batch[4].append(_key(reader, index))
                    continue
                for part, value in zip(batch, (_key(reader, index), *loaded), strict=False):
                    part.append(value)
            self.done += min(start + size, count) - start
            yield batch
            if self.progress is not None:
                self.progress(self.done, self.total)


#: A photo with people scored below this IoU is "missed" (``low_iou`` counts them).
LOW_IOU = 0.2


class Tally:
    """Every figure of one set of photos: overlap, all-foreground baseline, photos
    without people, alpha cleanliness, missed photos, and the same per manifest group."""

    def __init__(self, threshold: float, groups: dict[str, dict[str, str]] | None = None):
        self.threshold = threshold
        self.meter = SegmentationMeter(threshold=threshold)
        self.baseline = SegmentationMeter(threshold=threshold)
        self.empty = EmptyPhotos(threshold)
        self.alpha = AlphaFigures()
        self.unreadable: list[Any] = []
        #: column -> value -> meter, and the key -> value lookup of each column.
        self.lookup = groups or {}
        self.grouped: dict[str, dict[str, SegmentationMeter]] = {c: {} for c in self.lookup}

    def add(self, keys: list, probs: list, masks: list, ignores: list) -> None:
        ones = [np.ones(m.shape, np.float32) for m in masks]
        self.meter.update(probs, masks, ignores)
        self.baseline.update(ones, masks, ignores)
        self.empty.update(probs, masks, ignores)
        self.alpha.update(probs, masks, ignores)
        for column, values in self.lookup.items():
            for key, prob, mask, ignore in zip(keys, probs, masks, ignores, strict=True):
                value = values.get(str(key), "?")
                meter = self.grouped[column].setdefault(
                    value, SegmentationMeter(threshold=self.threshold)
                )
                meter.update([prob], [mask], [ignore])

    def figures(self) -> dict[str, Any]:
        figures = {
            **self.meter.compute(),
            "iou_interval": list(self.meter.iou_interval()),
            "baseline": self.baseline.compute(),
            "empty": self.empty.compute(),
            "alpha": self.alpha.compute(),
            "low_iou": self.meter.low_iou_images(LOW_IOU),
            "unreadable": self.unreadable,
        }
        if self.grouped:
            figures["groups"] = {
                column: {
                    value: meter.compute() | {"low_iou": meter.low_iou_images(LOW_IOU)}
                    for value, meter in sorted(by_value.items())
                }
                for column, by_value in self.grouped.items()
            }
        return figures


def _groups(reader: SourceReader, columns: Sequence[str]) -> dict[str, dict[str, str]]:
    """``column -> {photo name -> value}`` from the reader's folder's ``manifest.tsv``
    (first column ``name``); ``a,b`` joins two columns' values with ``/``. Empty when
    nothing is asked or the folder has no such manifest."""
    root = getattr(reader, "root", None)
    manifest = Path(root) / "manifest.tsv" if root is not None else None
    if not columns or manifest is None or not manifest.is_file():
        return {}
    lines = manifest.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t") if lines else []
    if not header or header[0] != "name":
        return {}
    rows = [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:] if line]
    out: dict[str, dict[str, str]] = {}
    for column in columns:
        parts = column.split(",")
        unknown = [p for p in parts if p not in header]
        if unknown:
            raise ValueError(
                f"{manifest}: no column {', '.join(unknown)} (columns: {', '.join(header[1:])})"
            )
        out[column] = {row["name"]: "/".join(row.get(p, "?") for p in parts) for row in rows}
    return out


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


class AlphaFigures:
    """How clean the cut-out's transparency is where there is nobody.

    A user who puts a cut-out on a new background sees every background pixel whose alpha
    is not zero as a veil. ``background_alpha`` is the share of the true-background
    pixels (not ignored) whose 8-bit alpha is at least :data:`VISIBLE` (about 1 %: the
    least a viewer can see on a contrasting background); ``empty_mean_alpha`` the mean
    alpha (0 to 1) over the photos without any person.
    """

    VISIBLE = 3

    def __init__(self) -> None:
        self.background = self.visible = 0
        self.empty_means: list[float] = []

    def update(self, probs, masks, ignores) -> None:
        for prob, mask, ignore in zip(probs, masks, ignores, strict=True):
            alpha8 = np.rint(np.clip(prob, 0, 1) * 255.0)
            background = (mask == 0) & (ignore == 0)
            self.background += int(background.sum())
            self.visible += int((background & (alpha8 >= self.VISIBLE)).sum())
            if shows_nobody(mask, ignore):
                self.empty_means.append(float(np.clip(prob, 0, 1).mean()))

    def compute(self) -> dict[str, Any]:
        means = self.empty_means
        return {
            "background_alpha": self.visible / self.background if self.background else 0.0,
            "empty_mean_alpha": sum(means) / len(means) if means else 0.0,
        }
