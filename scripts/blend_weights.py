"""Blend two checkpoints of the same network: (1 - alpha) * START + alpha * TUNED.

A fine-tuned model and the model it started from lie in one basin, so the weights
between them are models too (weight-space ensembling, as in WiSE-FT): a blend often
keeps most of what the fine-tuning taught (here: people on any backdrop) while giving
back part of what it cost (here: COCO scenes). Only floating-point tensors are blended,
BatchNorm's running statistics included; counters come from TUNED. The blend keeps
TUNED's model config and preprocessing, and says what it is made of under "blend".

    python scripts/blend_weights.py src/unetbg/weights/person.pth \\
        /work/runs/s2/best_model.pth 0.5 /work/runs/blend/blend-0.5.pth
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def blend(start: dict, tuned: dict, alpha: float) -> dict:
    """TUNED's checkpoint with its state dict moved ``1 - alpha`` of the way back to
    START's; refuses two networks of different shapes."""
    a, b = start["state_dict"], tuned["state_dict"]
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise SystemExit("the two checkpoints are not the same network")
    mixed = {}
    for name, theirs in b.items():
        if theirs.is_floating_point():
            mixed[name] = torch.lerp(a[name].float(), theirs.float(), alpha)
        else:
            mixed[name] = theirs.clone()
    out = {k: v for k, v in tuned.items() if k not in ("train_state", "card")}
    out["state_dict"] = mixed
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("start", type=Path, help="the checkpoint the fine-tuning started from")
    parser.add_argument("tuned", type=Path, help="the fine-tuned checkpoint")
    parser.add_argument("alpha", type=float, help="0 gives START, 1 gives TUNED")
    parser.add_argument("output", type=Path, help="the blended checkpoint to write")
    args = parser.parse_args()
    if not 0 <= args.alpha <= 1:
        parser.error(f"alpha must be in [0, 1], got {args.alpha}")
    if args.output.exists():
        parser.error(f"{args.output} exists: not overwriting it")
    load = dict(map_location="cpu", weights_only=True)
    out = blend(torch.load(args.start, **load), torch.load(args.tuned, **load), args.alpha)
    out["blend"] = {"start": str(args.start), "tuned": str(args.tuned), "alpha": args.alpha}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(args.output.name + ".partial")
    torch.save(out, partial)
    partial.replace(args.output)
    print(f"wrote {args.output}: {1 - args.alpha:g} x {args.start} + {args.alpha:g} x {args.tuned}")


if __name__ == "__main__":
    main()
