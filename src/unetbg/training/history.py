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


def best_epoch_of(records: Sequence[dict[str, Any]]) -> int | None:
    """The epoch with the best validation score as ``fit`` chooses it: the highest
    ``val_mean_iou`` (runs with several sources) or ``val_iou``, the earliest on a tie."""
    scored = [
        (r.get("val_mean_iou", r.get("val_iou")), r["epoch"])
        for r in records
        if r.get("val_mean_iou", r.get("val_iou")) is not None
    ]
    if not scored:
        return None
    best = max(score for score, _ in scored)
    return min(epoch for score, epoch in scored if score == best)


def history_figure(records: Sequence[dict[str, Any]], best_epoch: int | None = None):
    """The history plot as a matplotlib ``Figure``: train and val curves of loss, IoU, Dice
    and pixel accuracy per epoch, whole-number epoch ticks, and the best epoch (default:
    :func:`best_epoch_of`) marked in every panel by a dashed line and a star on val.

    Uses matplotlib's object API with the Agg canvas: no pyplot global state, no display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if best_epoch is None:
        best_epoch = best_epoch_of(records)
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
            best = [v for e, v in points if e == best_epoch]
            if split == "val" and best:
                ax.plot([best_epoch], best, "*", markersize=12, color="tab:red", zorder=3)
        if best_epoch is not None:
            label = f"best epoch {best_epoch}"
            ax.axvline(best_epoch, color="tab:red", linestyle="--", linewidth=1, label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_history(
    records: Sequence[dict[str, Any]], path: str | Path, best_epoch: int | None = None
) -> None:
    """Write :func:`history_figure` into a PNG at ``path`` (atomically)."""
    buffer = io.BytesIO()
    history_figure(records, best_epoch).savefig(buffer, format="png", dpi=100)
    write_atomic(Path(path), buffer.getvalue())
