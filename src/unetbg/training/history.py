"""Per-epoch metric history: ``metrics.json``, ``metrics.csv`` and ``training_history.png``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unetbg.images import write_atomic

#: Curves drawn in the history plot, one panel each: (record suffix, panel title).
PANELS = (("loss", "Loss"), ("iou", "IoU"), ("dice", "Dice"), ("pixel_accuracy", "Pixel accuracy"))


def write_history(records: Sequence[dict[str, Any]], run_dir: str | Path) -> None:
    """Write ``metrics.json`` and ``metrics.csv`` (one row per epoch), each atomically."""
    run_dir = Path(run_dir)
    write_atomic(run_dir / "metrics.json", json.dumps(list(records), indent=2).encode())
    columns: list[str] = []
    for record in records:
        columns += [key for key in record if key not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_atomic(run_dir / "metrics.csv", text.getvalue().encode())


def plot_history(records: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Draw train and val curves of loss, IoU, Dice and pixel accuracy into a PNG (atomic).

    Uses matplotlib's object API with the Agg canvas: no pyplot global state, no display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 7), layout="constrained")
    FigureCanvasAgg(fig)
    epochs = [r["epoch"] for r in records]
    for index, (key, title) in enumerate(PANELS):
        ax = fig.add_subplot(2, 2, index + 1)
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [r.get(f"{split}_{key}") for r in records]
            points = [(e, v) for e, v in zip(epochs, values, strict=True) if v is not None]
            if points:
                ax.plot(*zip(*points, strict=True), style, markersize=3, label=split)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_atomic(Path(path), buffer.getvalue())
