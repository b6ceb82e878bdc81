"""Dataset checks behind ``unetbg coco quick|verify|analyze|batch``.

Each function returns a plain dataclass (``to_dict()`` for JSON); ``cli/coco.py``
only prints them. ``quick`` and ``analyze`` read files and JSON only (no torch);
``batch`` imports torch and the presets. ``verify``, which adds a model forward pass
to these checks, lives above ``data`` and ``model`` in :mod:`unetbg.preflight`.
"""

from __future__ import annotations

import math
import os
import random
import shlex
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetbg.data.coco import (
    IMAGE_SUFFIXES,
    CocoError,
    CocoPersons,
    CocoStats,
    UnreadableImageError,
    annotation_candidates,
    find_annotation_file,
    image_dir,
)
from unetbg.data.filters import PersonFilter

ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
IMAGES_URL = "http://images.cocodataset.org/zips/{split}2017.zip"
#: Image counts of the official COCO 2017 splits, to tell a subset from the full set.
OFFICIAL_IMAGES = {"train": 118_287, "val": 5_000}
#: COCO's object size thresholds (area in pixels): small < 32², medium < 96², large above.
SMALL_AREA, MEDIUM_AREA = 32**2, 96**2
PERCENTILES = (5, 25, 50, 75, 95)

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass
class Check:
    """One named check: ``status`` is PASS, FAIL or SKIP (not run: a prerequisite failed)."""

    name: str
    status: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.status != FAIL


@dataclass
class QuickReport:
    """Folder structure of one split, what is missing and how to download it."""

    root: str
    split: str
    checks: list[Check]
    missing: list[str]
    commands: list[str]

    @property
    def ok(self) -> bool:
        return all(c.status == PASS for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def download_commands(
    root: str | os.PathLike, split: str, annotations: bool, images: bool
) -> list[str]:
    """Shell lines (wget/unzip) that fetch the official COCO 2017 archives into ``root``."""
    r = shlex.quote(str(root))
    lines = [f"mkdir -p {r}"] if annotations or images else []
    if annotations:
        lines += [
            f"wget -c {ANNOTATIONS_URL} -P {r}",
            f"unzip -o {r}/annotations_trainval2017.zip -d {r}",
        ]
    if images:
        lines += [
            f"wget -c {IMAGES_URL.format(split=split)} -P {r}",
            f"unzip -q -o {r}/{split}2017.zip -d {r}",
        ]
    return lines


def _count_images(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))


def quick(root: str | os.PathLike = "COCO", split: str = "val") -> QuickReport:
    """Check that ``root`` has the annotation file and image folder of ``split``."""
    root = Path(root)
    checks: list[Check] = []
    missing: list[str] = []
    if root.is_dir():
        checks.append(Check("root folder", PASS, str(root)))
    else:
        checks.append(Check("root folder", FAIL, f"{root} does not exist"))
        missing.append(f"folder {root}")

    ann = find_annotation_file(root, split)
    if ann is None:
        tried = " or ".join(str(p) for p in annotation_candidates(root, split))
        checks.append(Check("annotation file", FAIL, f"missing: {tried}"))
        missing.append(f"annotation file {tried}")
    else:
        note = (
            ""
            if ann.name.startswith("person_keypoints")
            else " (no person_keypoints file: keypoint filter unavailable)"
        )
        size_mb = ann.stat().st_size / 1e6
        checks.append(Check("annotation file", PASS, f"{ann} ({size_mb:.1f} MB){note}"))

    folder = image_dir(root, split)
    n = _count_images(folder) if folder.is_dir() else 0
    if not folder.is_dir():
        checks.append(Check("image folder", FAIL, f"missing: {folder}"))
        missing.append(f"image folder {folder}")
    elif n == 0:
        checks.append(Check("image folder", FAIL, f"{folder} has no .jpg/.png files"))
        missing.append(f"images in {folder}")
    else:
        official = OFFICIAL_IMAGES[split]
        scope = "the full split" if n >= official else f"a subset; full {split}2017 has {official}"
        checks.append(Check("image folder", PASS, f"{folder} ({n} image files, {scope})"))

    commands = download_commands(root, split, annotations=ann is None, images=n == 0)
    return QuickReport(str(root), split, checks, missing, commands)


def shape_text(t) -> str:
    """A tensor's shape as ``N×C×H×W``."""
    return "×".join(str(s) for s in t.shape)


def decode_sample_check(persons: CocoPersons, sample: int, progress: bool) -> Check:
    """Decode ``sample`` images (a fixed random choice) with their masks."""
    from tqdm import tqdm

    if not persons.image_ids:
        return Check("decode sample", FAIL, "no image on disk to decode")
    k = min(max(sample, 1), len(persons.image_ids))
    ids = sorted(random.Random(0).sample(persons.image_ids, k))
    bad: list[str] = []
    start = time.perf_counter()
    for image_id in tqdm(ids, desc="decode", disable=not progress, leave=False):
        try:
            image = persons.read_image(image_id)
            mask, _ = persons.masks(image_id)
            if mask.shape != image.shape[:2]:
                bad.append(
                    f"{persons.image_info(image_id)['file_name']}: mask {mask.shape} vs image {image.shape[:2]}"
                )
        except (UnreadableImageError, CocoError) as exc:
            bad.append(f"{persons.image_info(image_id)['file_name']}: {exc}")
    ms = 1000 * (time.perf_counter() - start) / k
    if bad:
        return Check("decode sample", FAIL, f"{len(bad)} of {k} unreadable: " + "; ".join(bad[:5]))
    return Check("decode sample", PASS, f"{k} images decoded with masks ({ms:.0f} ms/image)")


def loader_check(persons: CocoPersons, batch_size: int, image_size: int):
    """One DataLoader batch of the eval preset: ``(batch or None, Check)``."""
    import torch
    from torch.utils.data import DataLoader

    from unetbg.data.dataset import CocoPersonDataset
    from unetbg.data.presets import EvalPreset

    try:
        ds = CocoPersonDataset(persons, EvalPreset(image_size))
        # Worker processes cost more than they save for one batch on a small CPU box.
        loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
        start = time.perf_counter()
        batch = next(iter(loader))
        seconds = time.perf_counter() - start
    except (RuntimeError, ValueError, CocoError) as exc:
        return None, Check("data loader", FAIL, str(exc))
    n = batch["image"].shape[0]
    expected = {
        "image": (n, 3, image_size, image_size),
        "raw": (n, 3, image_size, image_size),
        "mask": (n, 1, image_size, image_size),
        "ignore": (n, 1, image_size, image_size),
    }
    wrong = [
        f"{k} {shape_text(batch[k])}"
        for k, shape in expected.items()
        if tuple(batch[k].shape) != shape
    ]
    if not all(torch.isfinite(batch[k]).all() for k in expected):
        wrong.append("non-finite values")
    if wrong:
        return None, Check("data loader", FAIL, "unexpected batch: " + ", ".join(wrong))
    skipped = f", {len(ds.unreadable)} unreadable replaced" if ds.unreadable else ""
    return batch, Check(
        "data loader",
        PASS,
        f"image {shape_text(batch['image'])}, mask {shape_text(batch['mask'])} in {seconds:.2f} s{skipped}",
    )


def _percentiles(values: list[float] | np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {f"p{p}": math.nan for p in PERCENTILES}
    arr = np.asarray(values, dtype=np.float64)
    # Six significant digits: enough for any report, without float noise in the JSON.
    return {f"p{p}": float(f"{np.percentile(arr, p):.6g}") for p in PERCENTILES}


#: The ``CocoStats`` counts an analyze report shows, in their JSON order (after
#: ``images_total``, which is ``CocoStats.images_listed``).
_REPORTED_STATS = (
    "images_on_disk",
    "images_missing",
    "files_unlisted",
    "person_annotations",
    "crowd_annotations",
    "valid_person_annotations",
    "ignored_person_annotations",
    "images_with_persons",
    "images_with_valid_persons",
    "images_without_persons",
)


@dataclass
class AnalyzeReport:
    """Figures over one split: the split's :class:`CocoStats` plus averages and sizes.

    The counts read as attributes too (``report.person_annotations``). Person areas are
    COCO's ``area`` field of the *valid* persons.
    """

    root: str
    split: str
    filter: dict[str, Any]
    stats: CocoStats
    avg_persons_per_image: float
    avg_persons_per_person_image: float
    person_area: dict[str, Any]
    image_sizes: dict[str, Any]

    @property
    def annotation_file(self) -> str:
        return self.stats.annotation_file

    @property
    def images_total(self) -> int:
        return self.stats.images_listed

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not fields: the reported counts of ``stats``.
        if name in _REPORTED_STATS:
            return getattr(self.__dict__["stats"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``unetbg coco analyze --json`` (keys and order unchanged)."""
        data = asdict(self)
        stats = data.pop("stats")
        return {
            "root": data["root"],
            "split": data["split"],
            "annotation_file": stats["annotation_file"],
            "filter": data["filter"],
            "images_total": stats["images_listed"],
            **{name: stats[name] for name in _REPORTED_STATS},
            "avg_persons_per_image": data["avg_persons_per_image"],
            "avg_persons_per_person_image": data["avg_persons_per_person_image"],
            "person_area": data["person_area"],
            "image_sizes": data["image_sizes"],
        }


def analyze(
    root: str | os.PathLike = "COCO", split: str = "val", filter: PersonFilter | None = None
) -> AnalyzeReport:
    """Count images and person annotations and describe person and image sizes (no decoding).

    ``avg_persons_per_image`` divides valid persons by all listed images;
    ``avg_persons_per_person_image`` by the images that have at least one valid person.
    Raises :class:`~unetbg.data.coco.CocoError` when the split cannot be loaded.
    """
    persons = CocoPersons(root, split, filter)
    s = persons.stats()
    f = persons.filter
    areas, relative = [], []
    for image_id in persons.coco.imgs:
        info = persons.image_info(image_id)
        for ann in persons.person_annotations(image_id):
            if f.is_valid(ann):
                areas.append(float(ann["area"]))
                relative.append(float(ann["area"]) / (info["width"] * info["height"]))
    arr = np.asarray(areas)
    person_area = {
        "small": int((arr < SMALL_AREA).sum()),
        "medium": int(((arr >= SMALL_AREA) & (arr < MEDIUM_AREA)).sum()),
        "large": int((arr >= MEDIUM_AREA).sum()),
        "thresholds": [SMALL_AREA, MEDIUM_AREA],
        "pixels": _percentiles(arr),
        "fraction_of_image": _percentiles(relative),
    }
    images = list(persons.coco.imgs.values())
    widths = np.asarray([i["width"] for i in images], dtype=np.float64)
    heights = np.asarray([i["height"] for i in images], dtype=np.float64)
    sizes = Counter((int(i["width"]), int(i["height"])) for i in images)
    image_sizes = {
        "width": {"min": _min(widths), "median": _median(widths), "max": _max(widths)},
        "height": {"min": _min(heights), "median": _median(heights), "max": _max(heights)},
        "megapixels": _percentiles(widths * heights / 1e6),
        "landscape": int((widths > heights).sum()),
        "portrait": int((widths < heights).sum()),
        "square": int((widths == heights).sum()),
        "most_common": [[w, h, n] for (w, h), n in sizes.most_common(5)],
    }
    listed = s.images_listed
    return AnalyzeReport(
        root=str(root),
        split=split,
        filter=f.to_dict(),
        stats=s,
        avg_persons_per_image=s.valid_person_annotations / listed if listed else 0.0,
        avg_persons_per_person_image=(
            s.valid_person_annotations / s.images_with_valid_persons
            if s.images_with_valid_persons
            else 0.0
        ),
        person_area=person_area,
        image_sizes=image_sizes,
    )


def _min(a: np.ndarray) -> float:
    return float(a.min()) if a.size else math.nan


def _max(a: np.ndarray) -> float:
    return float(a.max()) if a.size else math.nan


def _median(a: np.ndarray) -> float:
    return float(np.median(a)) if a.size else math.nan


@dataclass
class TensorSummary:
    """Shape, dtype and value range of one batch entry."""

    name: str
    shape: list[int]
    dtype: str
    min: float
    max: float
    mean: float


@dataclass
class BatchReport:
    """One DataLoader batch: tensors, timing and what it contained."""

    root: str
    split: str
    preset: str
    batch_size: int
    image_size: int
    image_ids: list[int]
    tensors: list[TensorSummary]
    seconds: float
    seconds_per_image: float
    foreground_fraction: float
    ignore_fraction: float
    unreadable: dict[int, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch(
    root: str | os.PathLike = "COCO",
    split: str = "val",
    batch_size: int = 8,
    image_size: int = 256,
    augment: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    filter: PersonFilter | None = None,
) -> BatchReport:
    """Load the first batch (shuffled by ``seed``) through the real dataset and DataLoader.

    ``augment`` uses :class:`TrainPreset` (seeded) instead of :class:`EvalPreset`. Time
    includes worker start-up, decoding, masks and transforms.
    """
    import torch
    from torch.utils.data import DataLoader

    from unetbg.data.dataset import CocoPersonDataset
    from unetbg.data.presets import EvalPreset, TrainPreset

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    persons = CocoPersons(root, split, filter)
    preset = TrainPreset(image_size, seed=seed) if augment else EvalPreset(image_size)
    ds = CocoPersonDataset(persons, preset)
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )
    start = time.perf_counter()
    b = next(iter(loader))
    seconds = time.perf_counter() - start
    n = int(b["image"].shape[0])
    tensors = [
        TensorSummary(
            name=k,
            shape=list(b[k].shape),
            dtype=str(b[k].dtype).removeprefix("torch."),
            min=float(b[k].min()),
            max=float(b[k].max()),
            mean=float(b[k].float().mean()),
        )
        for k in ("image", "raw", "mask", "ignore")
    ]
    return BatchReport(
        root=str(root),
        split=split,
        preset=repr(preset),
        batch_size=batch_size,
        image_size=image_size,
        image_ids=[int(i) for i in b["image_id"]],
        tensors=tensors,
        seconds=seconds,
        seconds_per_image=seconds / n,
        foreground_fraction=float(b["mask"].mean()),
        ignore_fraction=float(b["ignore"].mean()),
        unreadable=dict(ds.unreadable),
    )
