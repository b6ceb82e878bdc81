"""Which photos make the difference between two checkpoints on one COCO split.

A pooled (micro) IoU moves with a few big photos: this lists the photos whose
intersection minus union changed most from checkpoint A to checkpoint B (the photos that
cost B the most first), at each photo's resolution, without flip averaging or edge
refinement, crowd areas not scored::

    .venv/bin/python scripts/compare_per_photo.py ../shared/data/coco-mini default \\
        /work/runs/s2/best_model.pth --top 12
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from unetbg.data.sources import DataSource
from unetbg.jobs import resolve_checkpoint
from unetbg.model import Preprocessing, load_model, predict_probabilities


def per_photo(checkpoint: str, images: list, masks: list, ignores: list) -> list[tuple]:
    """``(intersection, union)`` per photo at the 0.5 cut."""
    model, ckpt = load_model(checkpoint, device=torch.device("cpu"))
    plain = Preprocessing.from_dict(ckpt["preprocessing"]).overridden(
        flip_average=False, refine_edges=False
    )
    probs = predict_probabilities(model, images, plain, torch.device("cpu"), batch_size=8)
    rows = []
    for prob, mask, ignore in zip(probs, masks, ignores, strict=True):
        scored = ~ignore if ignore is not None else np.ones_like(mask)
        person = prob >= 0.5
        rows.append((int((person & mask & scored).sum()), int(((person | mask) & scored).sum())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("coco_root")
    parser.add_argument("a", help="checkpoint A: default, best, an id or a path")
    parser.add_argument("b", help="checkpoint B")
    parser.add_argument("--split", default="val")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    reader = DataSource("coco", args.coco_root).reader(args.split, 10, "coco")
    keys, images, masks, ignores = [], [], [], []
    for index in range(len(reader)):
        image, mask, ignore = reader.load(index)[:3]
        keys.append(reader.key(index))
        images.append(image)
        masks.append(mask > 0)
        ignores.append(ignore > 0 if ignore is not None else None)
    a, b = (per_photo(resolve_checkpoint(c), images, masks, ignores) for c in (args.a, args.b))
    for name, rows in (("A", a), ("B", b)):
        print(f"{name}: micro IoU {sum(r[0] for r in rows) / sum(r[1] for r in rows):.3f}")
    order = sorted(range(len(keys)), key=lambda i: (b[i][0] - b[i][1]) - (a[i][0] - a[i][1]))
    print("photo  person pixels  A intersection/union  B intersection/union")
    for i in order[: args.top]:
        print(f"{keys[i]}  {int(masks[i].sum())}  {a[i][0]}/{a[i][1]}  {b[i][0]}/{b[i][1]}")


if __name__ == "__main__":
    main()
