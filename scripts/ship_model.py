"""Make a training run's best model the one that ships in the package.

    .venv/bin/python scripts/ship_model.py RUN_DIR [--coco-root ../shared/data/coco-mini]
        [--checkpoint RUN_DIR/snaps/ema-NNN.pth] [--flip-average] [--refine-edges]
        [--evaluation FILE]

Writes src/unetbg/weights/person.pth (float16, with its card: config, command, data
manifests, figures) after checking that its masks agree with the float32 weights on the
COCO val photos (IoU >= 0.995). Replace it rarely: every version stays in git history.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unetbg.data.sources import CocoReader
from unetbg.training.shipping import ship
from unetbg.weights import SHIPPED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--coco-root", type=Path, default=Path("../shared/data/coco-mini"))
    parser.add_argument("--output", type=Path, default=SHIPPED)
    parser.add_argument(
        "--command",
        default="unetbg train --preset cpu --output-dir RUN (continued with --resume RUN)",
        help="How the run was trained, for the card.",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="Ship this checkpoint of the run instead of its best_model.pth.",
    )
    parser.add_argument(
        "--flip-average",
        action="store_true",
        help="The shipped model averages each mask with the mirrored photo's by default.",
    )
    parser.add_argument(
        "--refine-edges",
        action="store_true",
        help="The shipped model moves its outlines onto the photo's edges by default.",
    )
    parser.add_argument(
        "--alpha-curve",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        default=None,
        help="Alpha 0 up to probability LOW, 1 from HIGH, linear between (clean background).",
    )
    parser.add_argument(
        "--evaluation",
        type=Path,
        default=None,
        help="`unetbg evaluate --json` output of these weights, for the card.",
    )
    args = parser.parse_args()
    val = CocoReader(args.coco_root, "val", "coco-mini")
    images = [val.load(i)[0] for i in range(len(val))]
    evaluation = json.loads(args.evaluation.read_text()) if args.evaluation else None
    card = ship(
        args.run_dir,
        args.output,
        images,
        args.command,
        checkpoint=args.checkpoint,
        flip_average=args.flip_average,
        refine_edges=args.refine_edges,
        evaluation=evaluation,
        alpha_curve=tuple(args.alpha_curve) if args.alpha_curve else None,
    )
    print(json.dumps({k: v for k, v in card.items() if k != "config"}, indent=2))
    print(f"wrote {args.output} ({args.output.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
