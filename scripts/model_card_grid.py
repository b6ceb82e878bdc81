"""The model card's picture: cut-outs of the best, median and worst coco-mini val photos.

    .venv/bin/python scripts/model_card_grid.py [CHECKPOINT] [--coco-root DIR] [-o PNG]

Scores every val photo with people at its own resolution (crowd areas ignored), sorts them
by IoU and draws, for the best, median and worst two each: the photo, the cut-out on a
checkerboard, and the error map (green: found, red: missed person, blue: false person).
Prints each shown photo's id and IoU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unetbg import ModelInference
from unetbg.data.sources import CocoReader
from unetbg.weights import SHIPPED

TILE = 220


def _fit(image: np.ndarray) -> Image.Image:
    picture = Image.fromarray(image)
    picture.thumbnail((TILE, TILE))
    canvas = Image.new("RGB", (TILE, TILE), (255, 255, 255))
    canvas.paste(picture, ((TILE - picture.width) // 2, (TILE - picture.height) // 2))
    return canvas


def _checker(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.where(((yy // 16 + xx // 16) % 2)[..., None] == 0, 200, 255).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, default=SHIPPED)
    parser.add_argument("--coco-root", type=Path, default=Path("../shared/data/coco-mini"))
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/model-card-grid.png"))
    args = parser.parse_args()
    model = ModelInference(args.checkpoint, device="cpu")
    val = CocoReader(args.coco_root, "val", "coco-mini")
    scored = []
    for index in range(len(val)):
        image, mask, ignore = val.load(index)
        if not mask.any():
            continue
        prob = model.predict_mask(image)[0]
        pred = prob >= 0.5
        keep = ignore == 0
        union = ((pred | (mask > 0)) & keep).sum()
        iou = float(((pred & (mask > 0)) & keep).sum() / union) if union else 1.0
        scored.append((iou, val.key(index), image, mask, prob))
    scored.sort(key=lambda row: -row[0])
    middle = len(scored) // 2
    picks = {"best": scored[:2], "median": scored[middle - 1 : middle + 1], "worst": scored[-2:]}
    rows = []
    for label, group in picks.items():
        for iou, key, image, mask, prob in group:
            print(f"{label:6} {key:>12} IoU {iou:.3f}")
            alpha = prob[..., None]
            cut = image * alpha + _checker(*prob.shape) * (1 - alpha)
            pred = prob >= 0.5
            errors = np.zeros(image.shape, np.uint8)
            errors[pred & (mask > 0)] = (40, 200, 40)
            errors[~pred & (mask > 0)] = (220, 40, 40)
            errors[pred & (mask == 0)] = (40, 90, 230)
            tiles = [_fit(image), _fit(cut.astype(np.uint8)), _fit(errors)]
            row = Image.new("RGB", (3 * TILE, TILE + 18), (255, 255, 255))
            for i, tile in enumerate(tiles):
                row.paste(tile, (i * TILE, 18))
            ImageDraw.Draw(row).text((4, 2), f"{label}: COCO {key}, IoU {iou:.3f}", fill=(0, 0, 0))
            rows.append(row)
    grid = Image.new("RGB", (3 * TILE, len(rows) * (TILE + 18)), (255, 255, 255))
    for i, row in enumerate(rows):
        grid.paste(row, (0, i * (TILE + 18)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.output, optimize=True)
    ious = [row[0] for row in scored]
    print(
        f"{len(scored)} val photos with people: median IoU {np.median(ious):.3f}; wrote {args.output}"
    )


if __name__ == "__main__":
    main()
