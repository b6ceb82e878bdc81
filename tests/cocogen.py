"""Small generated COCO 2017-format data with every edge case the data layer handles.

``make_coco(root)`` writes real JPEG files (PIL) and annotation JSON in the official
layout. Person pixels are painted red on a grey background so that a transform's
mask can be checked against the image colours. Every expected mask is built here
with numpy (not with pycocotools), so tests compare against an independent truth.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

PERSON_RGB = (220, 30, 30)
BACKGROUND_RGB = (128, 128, 128)
OTHER_RGB = (30, 30, 220)


@dataclass
class GeneratedCoco:
    """Where the data is and what each image is for."""

    root: Path
    split: str
    #: case name -> image id: polygons, rle, crowd, empty, missing, corrupt, filters
    ids: dict[str, int]
    #: image id -> expected (mask, ignore) under the default PersonFilter
    expected: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: image ids whose files exist and decode
    readable: list[int] = field(default_factory=list)


def _rect(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _ellipse(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8)


def _uncompressed_rle(m: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with 0s."""
    flat = np.asarray(m, np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": [int(c) for c in counts]}


def _compressed_rle(m: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _poly(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    # pycocotools fills a polygon on pixel corners: this covers rows y0..y1-1, cols x0..x1-1.
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _paint(h: int, w: int, person: np.ndarray, other: np.ndarray | None = None) -> bytes:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND_RGB
    if other is not None:
        img[other > 0] = OTHER_RGB
    img[person > 0] = PERSON_RGB
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def make_coco(root: str | Path, split: str = "val", keypoints: bool = True) -> GeneratedCoco:
    """Write generated COCO data under ``root`` and describe it.

    Images (id: case): 1 two polygon persons + a dog; 2 a compressed-RLE and an
    uncompressed-RLE person; 3 a crowd region overlapping a polygon person; 4 no person,
    only a car; 5 listed but missing on disk; 6 a truncated JPEG; 7 a tiny person without
    keypoints beside a large one with keypoints. ``extra_unlisted.jpg`` is on disk but
    not listed. ``keypoints=False`` writes only ``instances_<split>2017.json``.
    """
    root = Path(root)
    img_dir = root / f"{split}2017"
    ann_dir = root / "annotations"
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    gen = GeneratedCoco(root=root, split=split, ids={})
    images, anns = [], []

    def add_image(case: str, image_id: int, h: int, w: int) -> None:
        gen.ids[case] = image_id
        images.append(
            {
                "id": image_id,
                "file_name": f"{image_id:012d}.jpg",
                "height": h,
                "width": w,
                "license": 1,
            }
        )

    def add_ann(
        image_id: int, segm, m: np.ndarray, cat: int = 1, crowd: int = 0, kps: int = 3
    ) -> None:
        ys, xs = np.nonzero(m)
        bbox = [
            float(xs.min()),
            float(ys.min()),
            float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1),
        ]
        ann = {
            "id": len(anns) + 1,
            "image_id": image_id,
            "category_id": cat,
            "segmentation": segm,
            "area": float(m.sum()),
            "bbox": bbox,
            "iscrowd": crowd,
        }
        if cat == 1:
            ann["num_keypoints"] = kps
            ann["keypoints"] = [int(bbox[0]) + 1, int(bbox[1]) + 1, 2] * kps + [0, 0, 0] * (
                17 - kps
            )
        anns.append(ann)

    def write(image_id: int, data: bytes) -> None:
        (img_dir / f"{image_id:012d}.jpg").write_bytes(data)
        gen.readable.append(image_id)

    zeros = lambda h, w: np.zeros((h, w), np.uint8)  # noqa: E731 - tiny local helper

    # 1: polygons, plus a non-person annotation that must not reach the mask.
    h, w = 64, 96
    add_image("polygons", 1, h, w)
    a, b = _rect(h, w, 5, 8, 25, 50), _rect(h, w, 40, 20, 60, 60)
    dog = _rect(h, w, 70, 30, 90, 50)
    add_ann(1, _poly(5, 8, 25, 50), a)
    add_ann(1, _poly(40, 20, 60, 60), b)
    add_ann(1, _poly(70, 30, 90, 50), dog, cat=18)
    write(1, _paint(h, w, a | b, dog))
    gen.expected[1] = (a | b, zeros(h, w))

    # 2: RLE persons, one with compressed and one with uncompressed counts (portrait image).
    h, w = 100, 80
    add_image("rle", 2, h, w)
    e = _ellipse(h, w, 20, 40, 12, 30)
    r = _ellipse(h, w, 58, 55, 14, 25)
    add_ann(2, _compressed_rle(e), e)
    add_ann(2, _uncompressed_rle(r), r)
    write(2, _paint(h, w, e | r))
    gen.expected[2] = (e | r, zeros(h, w))

    # 3: crowd region (uncompressed RLE, as COCO stores crowds) overlapping a valid person.
    h, w = 64, 96
    add_image("crowd", 3, h, w)
    crowd = _rect(h, w, 30, 10, 90, 60)
    p = _rect(h, w, 10, 20, 40, 60)
    add_ann(3, _uncompressed_rle(crowd), crowd, crowd=1, kps=0)
    add_ann(3, _poly(10, 20, 40, 60), p)
    write(3, _paint(h, w, p | crowd))
    gen.expected[3] = (p, crowd & (1 - p))

    # 4: no person at all, only a car: a pure-background negative.
    h, w = 64, 64
    add_image("empty", 4, h, w)
    car = _rect(h, w, 10, 10, 40, 30)
    add_ann(4, _poly(10, 10, 40, 30), car, cat=3)
    write(4, _paint(h, w, zeros(h, w), car))
    gen.expected[4] = (zeros(h, w), zeros(h, w))

    # 5: listed with a person, but the file was never written.
    add_image("missing", 5, 64, 64)
    add_ann(5, _poly(4, 4, 30, 30), _rect(64, 64, 4, 4, 30, 30))

    # 6: truncated JPEG (first half of a valid file).
    h, w = 64, 64
    add_image("corrupt", 6, h, w)
    q = _rect(h, w, 10, 10, 40, 50)
    add_ann(6, _poly(10, 10, 40, 50), q)
    data = _paint(h, w, q)
    (img_dir / "000000000006.jpg").write_bytes(data[: len(data) // 2])

    # 7: a tiny person without keypoints (area 16) beside a large one with keypoints.
    h, w = 64, 96
    add_image("filters", 7, h, w)
    tiny = _rect(h, w, 80, 5, 84, 9)
    big = _rect(h, w, 10, 10, 50, 60)
    add_ann(7, _poly(80, 5, 84, 9), tiny, kps=0)
    add_ann(7, _poly(10, 10, 50, 60), big, kps=12)
    write(7, _paint(h, w, tiny | big))
    gen.expected[7] = (tiny | big, zeros(h, w))

    (img_dir / "extra_unlisted.jpg").write_bytes(_paint(32, 32, zeros(32, 32)))

    categories = [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 3, "name": "car", "supercategory": "vehicle"},
        {"id": 18, "name": "dog", "supercategory": "animal"},
    ]
    base = {
        "info": {"description": "unetbg generated test data"},
        "licenses": [{"id": 1, "name": "CC0"}],
    }
    instances = {**base, "images": images, "annotations": anns, "categories": categories}
    (ann_dir / f"instances_{split}2017.json").write_text(json.dumps(instances))
    if keypoints:
        person_kps = {
            **base,
            "images": images,
            "annotations": [x for x in anns if x["category_id"] == 1],
            "categories": [
                {**categories[0], "keypoints": [f"k{i}" for i in range(17)], "skeleton": []}
            ],
        }
        (ann_dir / f"person_keypoints_{split}2017.json").write_text(json.dumps(person_kps))
    gen.readable.sort()
    return gen
