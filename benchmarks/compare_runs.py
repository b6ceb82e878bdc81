"""Side-by-side validation figures of training runs, epoch by epoch.

    .venv/bin/python benchmarks/compare_runs.py RUN_DIR [RUN_DIR ...] [--from EPOCH]
        [--sources coco-mini,ccp-person]

For forks of one run (a copy of its folder at an epoch boundary, each continued with
``unetbg train --resume FORK --some-change``): they share the history before the fork
and the data order after it, so the difference between two columns is the change's.
Prints a markdown table of each run's letterboxed validation IoU per source (the weights
it validates: the average with ``--ema-decay``) from its ``metrics.csv``. Not a test.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read(run: Path) -> dict[int, dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return {int(row["epoch"]): row for row in csv.DictReader(f)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--from", dest="first", type=int, default=1)
    parser.add_argument("--sources", default="coco-mini,ccp-person")
    args = parser.parse_args()
    sources = args.sources.split(",")
    names = [run.name for run in args.runs]
    if len(set(names)) < len(names):  # columns are named by folder: keep them apart
        parser.error(f"two runs share a folder name: {', '.join(names)}")
    runs = {run.name: read(run) for run in args.runs}
    epochs = sorted({e for rows in runs.values() for e in rows if e >= args.first})
    header = ["epoch"] + [f"{name} {source}" for name in runs for source in sources]
    print("| " + " | ".join(header) + " |")
    print("| ---: " * len(header) + "|")
    for epoch in epochs:
        cells = [str(epoch)]
        for rows in runs.values():
            row = rows.get(epoch)
            for source in sources:
                value = row.get(f"val_{source}_iou") if row else None
                cells.append(f"{float(value):.3f}" if value else "")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
