"""Short ablations of the ``cpu`` training recipe: one change at a time, same budget.

    .venv/bin/python benchmarks/ablate_recipe.py OUT [--arms base,no-copy-paste,...]
        [--epochs 6] [--samples 480] [--shared ../shared/data] [--json]
    .venv/bin/python benchmarks/ablate_recipe.py OUT --family studio --studio-val DIR
        [--arms studio,no-swap,...] [--epochs 3] [--samples 480] [--limit 80]

``--family studio`` ablates the backdrop recipe of issue 19 instead: every arm starts from
the shipped default model (``--init-weights default``) and fine-tunes it on the four
sources (viton-person added) with the background swap and the wide augmentation, one
change at a time (``STUDIO_ARMS``), and is scored on coco-mini val, the val splits of
coco-person, ccp-person and viton-person, and ``studio-val`` (``scripts/build_studio_val.py``),
each capped at ``--limit`` photos (evenly spread over studio-val's people and backdrops
since its names sort by person), all without flip averaging or edge refinement. The
``default`` row scores the starting model itself.

Each arm is the ``cpu`` preset as it was for epochs 1-104 of the default model's run
(sources weighted 0.1 / 1 / 0.35, people pasted into photos without anyone too, no
``--empty-share``: pinned below, so the table in docs/model-card.md stays reproducible)
with ``--epochs`` epochs of ``--samples`` samples and one change (``ARMS`` below), trained
from random initialisation with the same seed by the real CLI (``unetbg train``) into
``OUT/ARM`` and scored by ``unetbg evaluate``'s code at each photo's original resolution
(crowd/ignore areas not scored) on coco-mini val and the two mask folders' validation
splits. The ``no-ema`` row needs no run of its own: it scores the base arm's raw weights at
its last epoch (stored in its ``last_model.pth`` beside the weight average), against the
average at that same step (``base (last epoch)``).

An arm whose folder already holds a finished run is scored again, not trained again;
one that was interrupted continues from its ``last_model.pth`` (``--resume``). Training
records go to a database under ``OUT/data``, not the user's. Prints a markdown table
(``--json``: JSON) on stdout. Not a test: nothing is asserted. Figures from short runs
rank the choices; they are far below what the full recipe reaches.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: Arm name -> what it changes in the ``cpu`` preset (``unetbg train`` options).
ARMS: dict[str, list[str]] = {
    "base": [],
    "no-copy-paste": ["--copy-paste", "0"],
    "ccp-weight-1": ["ccp-weight", "1"],
    "no-ccp": ["ccp-weight", "0"],
    "256px": ["--image-size", "256"],
    "ccp-partial": ["--partial-sources", "ccp-person"],
}

#: The backdrop recipe's arms (``--family studio``): what each changes in ``studio``.
STUDIO_ARMS: dict[str, list[str]] = {
    "studio": [],
    "no-swap": ["--background-swap", "0"],
    "no-viton": ["viton-weight", "0"],
    "viton-1": ["viton-weight", "1"],
    "close-ups-0.6": ["--swap-close-ups", "0.6"],
    "standard-augment": ["--augment-range", "standard"],
    "empty-0.35": ["--empty-share", "0.35"],
    "swap-ccp-viton": ["--swap-sources", "ccp-person", "--swap-sources", "viton-person"],
    "lr-1e-4": ["--lr", "1e-4"],
}


def studio_command(run: Path, shared: Path, change: list[str], args) -> list[str]:
    """``unetbg train`` for one arm of the backdrop recipe (fine-tuning the default)."""
    viton = "0.5"
    if change[:1] == ["viton-weight"]:
        viton, change = change[1], []
    specs = [
        f"coco:{shared / 'coco-mini'}:0.3",
        f"masks:{shared / 'coco-person'}:1",
        f"masks:{shared / 'ccp-person'}:0.35",
    ]
    if float(viton) > 0:
        specs.append(f"masks:{shared / 'viton-person'}:{viton}")
    command = ["--preset", "cpu", "--output-dir", str(run), "--init-weights", "default"]
    for spec in specs:
        command += ["--data", spec]
    command += ["--background-swap", "0.4", "--augment-range", "wide", "--lr", "3e-4"]
    command += ["--epochs", str(args.epochs), "--samples-per-epoch", str(args.samples)]
    return command + ["--no-final-evaluation", *change]


def sources(shared: Path, ccp_weight: str) -> list[str]:
    """The ``cpu`` preset's sources with ccp-person at ``ccp_weight`` (``0``: left out)."""
    specs = [f"coco:{shared / 'coco-mini'}:0.1", f"masks:{shared / 'coco-person'}:1"]
    if float(ccp_weight) > 0:
        specs.append(f"masks:{shared / 'ccp-person'}:{ccp_weight}")
    return specs


def train(out: Path, arm: str, args: argparse.Namespace, env: dict[str, str]) -> float:
    """Train ``arm`` (or continue it); returns the seconds spent now."""
    run = out / arm
    if (run / "done").is_file():
        return 0.0
    command = [str(BIN / "unetbg"), "train"]
    if (run / "last_model.pth").is_file():
        command += ["--resume", str(run)]
    elif args.family == "studio":
        command += studio_command(run, args.shared, list(STUDIO_ARMS[arm]), args)
    else:
        change = list(ARMS[arm])
        ccp = "0.35"
        if change[:1] == ["ccp-weight"]:
            ccp, change = change[1], []
        command += ["--preset", "cpu", "--output-dir", str(run)]
        for spec in sources(args.shared, ccp):
            command += ["--data", spec]
        command += ["--epochs", str(args.epochs), "--samples-per-epoch", str(args.samples)]
        command += ["--empty-share", "0", "--copy-paste-empty"]
        command += change
    started = time.perf_counter()
    print(f"[{arm}] {' '.join(command)}", file=sys.stderr, flush=True)
    with open(out / f"{arm}.log", "a") as log:
        subprocess.run(command, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    (run / "done").write_text("finished\n")
    return time.perf_counter() - started


def raw_weights(run: Path) -> tuple[Path, Path]:
    """The raw and the averaged weights of ``run``'s last epoch as two checkpoint files."""
    import torch

    from unetbg.model import load_checkpoint, save_checkpoint

    last = load_checkpoint(run / "last_model.pth", map_location="cpu")
    ema = last["train_state"]["ema"]["weights"]
    paths = run / "last_raw.pth", run / "last_ema.pth"
    for path, weights in zip(paths, (last["state_dict"], ema), strict=True):
        state = {k: v for k, v in last.items() if k != "train_state"}
        state["state_dict"] = {k: torch.as_tensor(v) for k, v in weights.items()}
        save_checkpoint(path, state)
    return paths


def score(checkpoint: Path | str, args: argparse.Namespace) -> dict[str, float]:
    from unetbg.training.evaluation import evaluate_checkpoint

    if args.family == "studio":
        return score_studio(checkpoint, args)
    result = evaluate_checkpoint(
        checkpoint,
        args.shared / "coco-mini",
        data=[f"masks:{args.shared / 'coco-person'}", f"masks:{args.shared / 'ccp-person'}"],
        device="cpu",
    )
    figures = {name: s["iou"] for name, s in result["sources"].items()}
    figures["mean"] = result["mean_iou"]
    return figures


def score_studio(checkpoint: Path | str, args: argparse.Namespace) -> dict[str, float]:
    """IoU on the four sources' val parts and studio-val, studio-val's worst backdrop and
    its photos below IoU 0.2 (out of ``--limit``)."""
    from unetbg.data.folders import MaskFolder
    from unetbg.training.evaluation import evaluate_checkpoint

    shared = args.shared
    data = [f"masks:{shared / n}" for n in ("coco-person", "ccp-person", "viton-person")]
    figures = {}
    # Without flip averaging and edge refinement, whatever the checkpoint says: the
    # shipped model has both on, the arms' checkpoints neither, and only weights differ.
    plain = {"flip_average": False, "refine_edges": False}
    result = evaluate_checkpoint(
        checkpoint, shared / "coco-mini", data=data, device="cpu", limit=args.limit, **plain
    )
    figures = {name: s["iou"] for name, s in result["sources"].items()}
    # studio-val sorts by person: score an even spread of it, not its first people.
    studio = MaskFolder(args.studio_val, "val")
    step = max(1, len(studio) // args.limit)
    picked = args.out / "studio-pick"
    if not picked.is_dir():
        for sub in ("images", "masks"):
            (picked / sub).mkdir(parents=True)
        for stem in studio.stems[::step]:
            for sub, path in (
                ("images", studio.images[stem]),
                ("masks", studio.masks_by_stem[stem]),
            ):
                (picked / sub / path.name).symlink_to(path)
        (picked / "manifest.tsv").symlink_to(args.studio_val / "manifest.tsv")
        (picked / "VALIDATION_ONLY").write_text("")
    spread = evaluate_checkpoint(
        checkpoint, None, data=[f"masks:{picked}"], device="cpu", group_by=["backdrop"], **plain
    )["sources"]["studio-pick"]
    figures["studio-val"] = spread["iou"]
    figures["worst backdrop"] = min(g["iou"] for g in spread["groups"]["backdrop"].values())
    figures["IoU < 0.2"] = spread["low_iou"]
    figures["mean"] = sum(figures[n] for n in STUDIO_COLUMNS[:5]) / 5
    return figures


STUDIO_COLUMNS = ["coco-mini", "coco-person", "ccp-person", "viton-person", "studio-val"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--family", choices=["cpu", "studio"], default="cpu")
    parser.add_argument("--arms", default=None)
    parser.add_argument("--studio-val", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=80, help="photos per set (studio)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--samples", type=int, default=480)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.out, args.shared = args.out.resolve(), args.shared.resolve()
    known = STUDIO_ARMS if args.family == "studio" else ARMS
    arms = [a for a in (args.arms or ",".join(known)).split(",") if a]
    unknown = sorted(set(arms) - set(known))
    if unknown:
        parser.error(f"unknown arms {unknown}; known: {', '.join(known)}")
    if args.family == "studio" and (args.studio_val is None or not args.studio_val.is_dir()):
        parser.error("--family studio needs --studio-val DIR (scripts/build_studio_val.py)")
    if args.studio_val is not None:
        args.studio_val = args.studio_val.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, UNETBG_DATA_DIR=str(args.out / "data"))

    rows: dict[str, dict] = {}
    if args.family == "studio":
        from unetbg.jobs import resolve_checkpoint

        start = resolve_checkpoint("default")
        rows["default (start)"] = score(start, args) | {"train_s": 0.0}
    for arm in arms:
        seconds = train(args.out, arm, args, env)
        rows[arm] = score(args.out / arm / "best_model.pth", args) | {"train_s": seconds}
        print(f"[{arm}] {rows[arm]}", file=sys.stderr, flush=True)
    if "base" in arms and args.family == "cpu":
        raw, ema = raw_weights(args.out / "base")
        rows["base (last epoch)"] = score(ema, args)
        rows["no-ema (last epoch)"] = score(raw, args)

    if args.json:
        print(json.dumps(rows, indent=2))
        return
    names = ["coco-mini", "coco-person", "ccp-person", "mean"]
    if args.family == "studio":
        names = [*STUDIO_COLUMNS, "worst backdrop", "IoU < 0.2", "mean"]
    print("| arm | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for arm, figures in rows.items():
        print(
            f"| {arm} | " + " | ".join(f"{figures.get(n, float('nan')):.3f}" for n in names) + " |"
        )


if __name__ == "__main__":
    main()
