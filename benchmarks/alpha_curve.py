"""How clean the cut-out's alpha is, for several alpha curves, from one set of predictions.

    .venv/bin/python benchmarks/alpha_curve.py CHECKPOINT [--shared ../shared/data]
        [--curves 0:1,0.05:0.95,0.1:0.9,...] [--json]

The checkpoint's own steps (flip averaging, edge refinement) run once per photo on
coco-mini val and the val splits of coco-person and ccp-person; each curve ``LOW:HIGH``
(alpha 0 up to probability LOW, 1 from HIGH, linear between: ``Preprocessing.alpha_low``
and ``alpha_high``) is then applied to the same probabilities and scored with
``unetbg evaluate``'s own figures: micro IoU at 0.5, the share of true-background pixels
with a visible 8-bit alpha (>= 3) and the mean alpha of photos without people, plus the
share of person pixels left semi-transparent (alpha strictly between 0 and 1: the soft
edge that must stay soft). Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def predictions(checkpoint: str, shared: Path):
    """``{set: (probs, masks, ignores)}`` with the checkpoint's steps, before any curve."""
    from unetbg.data.sources import DataSource
    from unetbg.edges import refine_all
    from unetbg.model import Preprocessing, load_model, predict_probabilities
    from unetbg.weights import DEFAULT_SPEC, default_checkpoint

    path = default_checkpoint() if checkpoint == DEFAULT_SPEC else Path(checkpoint)
    model, ckpt = load_model(path, device="cpu")
    pre = Preprocessing.from_dict(ckpt["preprocessing"]).overridden(alpha_low=0.0, alpha_high=1.0)
    sets = {
        "coco-mini": DataSource("coco", str(shared / "coco-mini")).reader("val"),
        "coco-person": DataSource("masks", str(shared / "coco-person")).reader("val"),
        "ccp-person": DataSource("masks", str(shared / "ccp-person")).reader("val"),
    }
    out = {}
    for name, reader in sets.items():
        images, masks, ignores = zip(*(reader.load(i) for i in range(len(reader))), strict=True)
        probs = predict_probabilities(model, list(images), pre, "cpu", batch_size=8)
        out[name] = (refine_all(probs, images, pre), masks, ignores)
    return out


def score(probs, masks, ignores, low: float, high: float) -> dict[str, float]:
    from unetbg.edges import alpha_curve
    from unetbg.model import SegmentationMeter
    from unetbg.training.evaluation import AlphaFigures

    curved = [alpha_curve(p, low, high) if (low, high) != (0, 1) else p for p in probs]
    meter, alpha = SegmentationMeter(threshold=0.5), AlphaFigures()
    meter.update(curved, list(masks), list(ignores))
    alpha.update(curved, masks, ignores)
    person = sum(int(((m > 0) & (i == 0)).sum()) for m, i in zip(masks, ignores, strict=True))
    soft = sum(
        int(((m > 0) & (i == 0) & (c > 0) & (c < 1)).sum())
        for c, m, i in zip(curved, masks, ignores, strict=True)
    )
    return {"iou": meter.compute()["iou"], **alpha.compute(), "soft_person": soft / person}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", default="default", help="a path or default")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--curves", default="0:1,0.05:0.95,0.1:0.9,0.15:0.85,0.2:0.8,0.25:0.75")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    curves = [tuple(float(v) for v in c.split(":")) for c in args.curves.split(",")]
    preds = predictions(args.checkpoint, args.shared.resolve())
    rows = {
        f"{low:g}:{high:g}": {name: score(*preds[name], low, high) for name in preds}
        for low, high in curves
    }
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        "| curve | IoU coco-mini / coco-person / ccp-person | visible background alpha, "
        "coco-person val | mean alpha, coco-mini photos without people | soft person pixels |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    for curve, by_set in rows.items():
        ious = " / ".join(f"{by_set[n]['iou']:.3f}" for n in by_set)
        print(
            f"| {curve} | {ious} | {by_set['coco-person']['background_alpha']:.1%} | "
            f"{by_set['coco-mini']['empty_mean_alpha']:.4f} | "
            f"{np.mean([v['soft_person'] for v in by_set.values()]):.1%} |"
        )


if __name__ == "__main__":
    main()
