"""COCO 2017 person masks: annotation loading, image listing and mask union.

Layout (the official one)::

    <root>/annotations/person_keypoints_<split>2017.json   (preferred)
    <root>/annotations/instances_<split>2017.json          (fallback)
    <root>/<split>2017/<file_name>.jpg

Images are decoded *without* applying EXIF orientation: COCO's polygons and RLE
are drawn on the stored pixel grid, so rotating the pixels would misalign the
masks. (That is why this module does not use :func:`unetbg.images.read_image`,
which honours EXIF for user photos.)
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from unetbg.data.filters import PERSON_CATEGORY_ID, PersonFilter

SPLITS = ("train", "val")
ANNOTATION_PREFERENCE = ("person_keypoints", "instances")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class CocoError(Exception):
    """The COCO folder or its annotation file cannot be used (message says why)."""


class UnreadableImageError(Exception):
    """An image file exists but cannot be decoded into the annotated size."""


def annotation_candidates(root: str | os.PathLike, split: str) -> list[Path]:
    """Annotation files tried for ``split``, in order of preference."""
    _check_split(split)
    return [
        Path(root) / "annotations" / f"{kind}_{split}2017.json" for kind in ANNOTATION_PREFERENCE
    ]


def find_annotation_file(root: str | os.PathLike, split: str) -> Path | None:
    """The first existing annotation file for ``split``, or ``None``."""
    return next((p for p in annotation_candidates(root, split) if p.is_file()), None)


def image_dir(root: str | os.PathLike, split: str) -> Path:
    """``<root>/<split>2017``."""
    _check_split(split)
    return Path(root) / f"{split}2017"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")


def load_coco(path: str | os.PathLike) -> COCO:
    """Load an annotation file into a pycocotools ``COCO`` index, quietly.

    pycocotools prints progress to stdout, which would corrupt ``--json`` output, so
    it is captured. Raises :class:`CocoError` for unreadable or malformed files.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            dataset = json.load(fh)
    except OSError as exc:
        raise CocoError(f"cannot read annotation file {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CocoError(f"annotation file {path} is not valid JSON: {exc}") from exc
    if not isinstance(dataset, dict) or not isinstance(dataset.get("images"), list):
        raise CocoError(f"annotation file {path} has no 'images' list: not a COCO file")
    dataset.setdefault("annotations", [])
    dataset.setdefault("categories", [])
    coco = COCO()
    coco.dataset = dataset
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    except (KeyError, TypeError) as exc:
        raise CocoError(f"annotation file {path} is malformed: missing or bad field {exc}") from exc
    return coco


def annotation_mask(ann: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Rasterise one annotation (polygons, compressed or uncompressed RLE) to ``H×W`` uint8.

    Polygons with fewer than three points are dropped (pycocotools cannot draw them);
    an annotation with nothing drawable gives an empty mask.
    """
    segm = ann.get("segmentation")
    if isinstance(segm, list):
        polys = [p for p in segm if isinstance(p, list) and len(p) >= 6]
        if not polys:
            return np.zeros((height, width), np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(segm, dict) and "counts" in segm:
        if isinstance(segm["counts"], list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segm, *segm["size"])
        else:
            rle = segm
        if tuple(rle["size"]) != (height, width):
            raise CocoError(
                f"annotation {ann.get('id')}: RLE size {tuple(rle['size'])} "
                f"differs from the image size {(height, width)}"
            )
    else:
        return np.zeros((height, width), np.uint8)
    with warnings.catch_warnings():
        # pycocotools' Cython decoder trips NumPy 2's copy-keyword deprecation on every
        # call; the result is correct, and the noise would bury real warnings.
        warnings.filterwarnings(
            "ignore",
            message="__array__ implementation doesn't accept a copy keyword",
            category=DeprecationWarning,
        )
        return mask_utils.decode(rle).astype(np.uint8)


def read_rgb(path: str | os.PathLike, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image to ``H×W×3`` uint8 RGB on its stored pixel grid (no EXIF turn).

    Raises :class:`UnreadableImageError` with a short reason for a missing, truncated or
    undecodable file, or when the size differs from ``expected_hw`` (the annotated size).
    """
    try:
        with Image.open(path) as img:
            img.load()
            array = np.asarray(img.convert("RGB"))
    except FileNotFoundError as exc:
        raise UnreadableImageError("file not found") from exc
    except Image.DecompressionBombError as exc:
        raise UnreadableImageError(f"too many pixels: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImageError(f"cannot decode: {exc}") from exc
    if expected_hw is not None and array.shape[:2] != tuple(expected_hw):
        h, w = array.shape[:2]
        raise UnreadableImageError(
            f"decoded size {w}x{h} differs from the annotated {expected_hw[1]}x{expected_hw[0]}"
        )
    return array


@dataclass(frozen=True)
class CocoStats:
    """Counts over one split, computed from the annotation file and a folder listing."""

    annotation_file: str
    images_listed: int
    images_on_disk: int
    images_missing: int
    files_unlisted: int
    images_selected: int
    person_annotations: int
    crowd_annotations: int
    valid_person_annotations: int
    ignored_person_annotations: int
    images_with_persons: int
    images_with_valid_persons: int
    images_with_crowd: int
    images_without_persons: int


class CocoPersons:
    """Person masks for one COCO 2017 split.

    ``image_ids`` are the selected images that exist on disk, sorted: every listed
    image by default, including the ones without any valid person (useful negatives);
    ``include_empty=False`` keeps only images with at least one valid person, and the
    filter's ``crowd="skip"`` drops images with a crowd region. ``missing`` are the ids
    of selected images whose file is absent: reported, never raised.

    See :class:`PersonFilter` for which annotations count as persons.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "val",
        filter: PersonFilter | None = None,
        include_empty: bool = True,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.filter = filter or PersonFilter()
        self.include_empty = include_empty
        self.image_dir = image_dir(self.root, split)
        found = find_annotation_file(self.root, split)
        if found is None:
            tried = ", ".join(str(p) for p in annotation_candidates(self.root, split))
            raise CocoError(f"no annotation file for split {split!r}; looked for {tried}")
        self.annotation_file = found
        self.coco = load_coco(found)
        if self.filter.require_keypoints and not found.name.startswith("person_keypoints"):
            raise CocoError(
                f"require_keypoints needs person_keypoints_{split}2017.json; only {found.name} was found"
            )
        if not self.image_dir.is_dir():
            raise CocoError(f"image folder {self.image_dir} does not exist")

        self._persons: dict[int, list[dict]] = {}
        for ann in self.coco.dataset["annotations"]:
            if ann.get("category_id") == PERSON_CATEGORY_ID:
                self._persons.setdefault(ann["image_id"], []).append(ann)

        # One directory listing instead of a stat per image (118k files for train).
        with os.scandir(self.image_dir) as entries:
            on_disk = {e.name for e in entries if e.is_file()}
        listed_names = {img["file_name"] for img in self.coco.dataset["images"]}
        self.files_unlisted = sum(
            1 for n in on_disk if n not in listed_names and n.lower().endswith(IMAGE_SUFFIXES)
        )

        selected = sorted(i for i in self.coco.imgs if self._selected(i))
        self.image_ids: list[int] = []
        self.missing: list[int] = []
        for image_id in selected:
            name = self.coco.imgs[image_id]["file_name"]
            (self.image_ids if name in on_disk else self.missing).append(image_id)
        self._on_disk = on_disk

    def _selected(self, image_id: int) -> bool:
        anns = self._persons.get(image_id, [])
        if self.filter.crowd == "skip" and any(self.filter.is_crowd(a) for a in anns):
            return False
        return self.include_empty or any(self.filter.is_valid(a) for a in anns)

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_info(self, image_id: int) -> dict[str, Any]:
        """The COCO ``images`` entry (file_name, height, width, …)."""
        return self.coco.imgs[image_id]

    def image_path(self, image_id: int) -> Path:
        """Where the image file for ``image_id`` is (or should be)."""
        return self.image_dir / self.coco.imgs[image_id]["file_name"]

    def person_annotations(self, image_id: int) -> list[dict[str, Any]]:
        """Every person annotation (crowd or not, valid or not) of the image."""
        return list(self._persons.get(image_id, []))

    def masks(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mask, ignore)``, both ``H×W`` uint8 in {0, 1} at the annotated size.

        ``mask`` is the union of the valid persons; ``ignore`` marks crowd regions (with
        ``crowd="ignore"``) and rejected persons, minus the pixels a valid person covers.
        """
        info = self.coco.imgs[image_id]
        h, w = int(info["height"]), int(info["width"])
        mask = np.zeros((h, w), np.uint8)
        ignore = np.zeros((h, w), np.uint8)
        for ann in self._persons.get(image_id, []):
            if self.filter.is_valid(ann):
                mask |= annotation_mask(ann, h, w)
            elif self.filter.is_ignored(ann):
                ignore |= annotation_mask(ann, h, w)
        ignore &= 1 - mask
        return mask, ignore

    def other_objects(self, min_side: int = 24) -> list[dict[str, Any]]:
        """The annotations of things that are not people in the selected images on disk
        (no crowd regions, a box at least ``min_side`` pixels each way), by id: cups,
        scissors, dogs and cars for the background swap to lay down as non-people. Read
        from the split's ``instances`` file when there is one (any other gives none)."""
        on_disk = set(self.image_ids)
        # The person_keypoints file (preferred for people) lists people only.
        instances = self.root / "annotations" / f"instances_{self.split}2017.json"
        if self.annotation_file.name.startswith("instances_") or not instances.is_file():
            annotations = self.coco.dataset["annotations"]
        else:
            annotations = load_coco(instances).dataset["annotations"]
        return sorted(
            (
                ann
                for ann in annotations
                if ann.get("category_id") != PERSON_CATEGORY_ID
                and not ann.get("iscrowd")
                and ann.get("image_id") in on_disk
                and min(ann.get("bbox", [0, 0, 0, 0])[2:]) >= min_side
            ),
            key=lambda ann: ann["id"],
        )

    def cut_out(self, ann: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(picture, outline)``: the box of one annotation cut from its photo, and its
        outline inside that box (float32 0..1); raises :class:`UnreadableImageError`."""
        image = self.read_image(ann["image_id"])
        height, width = image.shape[:2]
        outline = annotation_mask(ann, height, width)
        x, y, w, h = ann["bbox"]
        left, top = max(0, int(x)), max(0, int(y))
        right, bottom = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
        return image[top:bottom, left:right], outline[top:bottom, left:right].astype(np.float32)

    def read_image(self, image_id: int) -> np.ndarray:
        """Decode the image (``H×W×3`` uint8 RGB); raises :class:`UnreadableImageError`."""
        info = self.coco.imgs[image_id]
        return read_rgb(self.image_path(image_id), (int(info["height"]), int(info["width"])))

    def stats(self) -> CocoStats:
        """Counts over the whole split (every listed image, whatever ``include_empty``)."""
        f = self.filter
        all_persons = [a for anns in self._persons.values() for a in anns]
        per_image = [anns for i, anns in self._persons.items() if i in self.coco.imgs]
        listed = len(self.coco.imgs)
        with_persons = sum(1 for anns in per_image if anns)
        on_disk = sum(1 for img in self.coco.dataset["images"] if img["file_name"] in self._on_disk)
        return CocoStats(
            annotation_file=str(self.annotation_file),
            images_listed=listed,
            images_on_disk=on_disk,
            images_missing=listed - on_disk,
            files_unlisted=self.files_unlisted,
            images_selected=len(self.image_ids) + len(self.missing),
            person_annotations=len(all_persons),
            crowd_annotations=sum(1 for a in all_persons if f.is_crowd(a)),
            valid_person_annotations=sum(1 for a in all_persons if f.is_valid(a)),
            ignored_person_annotations=sum(1 for a in all_persons if f.is_ignored(a)),
            images_with_persons=with_persons,
            images_with_valid_persons=sum(1 for anns in per_image if any(map(f.is_valid, anns))),
            images_with_crowd=sum(1 for anns in per_image if any(map(f.is_crowd, anns))),
            images_without_persons=listed - with_persons,
        )
