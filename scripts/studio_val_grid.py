"""The model card's backdrop picture: one studio-val person on every backdrop, cut out by
each model given.

    .venv/bin/python scripts/studio_val_grid.py STUDIO_VAL --person ccp-person-0014-head \\
        [--checkpoint default --checkpoint RUN/best_model.pth ...] [-o PNG]

Columns are the backdrops of ``scripts/build_studio_val.py``; the first row is the photo,
then one row per checkpoint: its cut-out on a checkerboard with the photo's IoU (threshold
0.5) in the corner. ``--person`` is a photo name without its backdrop (``SOURCE-STEM-
FRAMING``, as in studio-val's manifest.tsv). Prints each IoU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unetbg import ModelInference
from unetbg.data.folders import MaskFolder

TILE = 150


def _tile(image: np.ndarray, label: str = "") -> Image.Image:
    picture = Image.fromarray(image)
    picture.thumbnail((TILE, TILE))
    canvas = Image.new("RGB", (TILE, TILE), (255, 255, 255))
    canvas.paste(picture, ((TILE - picture.width) // 2, (TILE - picture.height) // 2))
    if label:
        ImageDraw.Draw(canvas).rectangle((0, 0, 62, 13), fill=(255, 255, 255))
        ImageDraw.Draw(canvas).text((2, 1), label, fill=(0, 0, 0))
    return canvas


def _cutout(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    h, w = alpha.shape
    yy, xx = np.mgrid[:h, :w]
    board = np.where(((yy // 12 + xx // 12) % 2)[..., None] == 0, 190, 255).astype(np.float32)
    a = alpha[..., None]
    return np.clip(rgb * a + board * (1 - a), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studio_val", type=Path)
    parser.add_argument("--person", required=True, help="SOURCE-STEM-FRAMING")
    parser.add_argument("--checkpoint", action="append", default=None)
    parser.add_argument("-o", "--output", type=Path, default=Path("studio-val-grid.png"))
    args = parser.parse_args()
    folder = MaskFolder(args.studio_val, "val")
    stems = [s for s in folder.stems if s.startswith(args.person + "-")]
    if not stems:
        parser.error(f"no studio-val photo starts with {args.person}-")
    checkpoints = args.checkpoint or ["default"]
    models = [ModelInference(None if c == "default" else c, device="cpu") for c in checkpoints]
    grid = Image.new("RGB", (TILE * len(stems), TILE * (1 + len(models))), (255, 255, 255))
    for column, stem in enumerate(stems):
        rgb = folder.read_image(stem)
        mask = folder.masks(stem, rgb.shape[:2])[0].astype(bool)
        grid.paste(_tile(rgb, stem.rsplit("-", 1)[1]), (column * TILE, 0))
        for row, model in enumerate(models, 1):
            alpha = model.predict_arrays([rgb])[0]
            found = alpha >= 0.5
            iou = (found & mask).sum() / max(1, (found | mask).sum())
            print(f"{checkpoints[row - 1]}\t{stem}\t{iou:.3f}")
            grid.paste(_tile(_cutout(rgb, alpha), f"IoU {iou:.2f}"), (column * TILE, row * TILE))
    grid.save(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
