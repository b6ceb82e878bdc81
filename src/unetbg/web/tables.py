"""Job records (the views :mod:`unetbg.jobs` returns) as the tables and curves the
dashboard shows. Pure pandas, no Streamlit: tested without a browser."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

from unetbg.jobs import CheckpointView, EpochView, ItemView, JobView

#: Curves drawn for a training job: (EpochView field, chart title).
CURVES = (
    ("loss", "Loss"),
    ("iou", "IoU"),
    ("dice", "Dice"),
    ("pixel_accuracy", "Pixel accuracy"),
)


def jobs_table(jobs: Sequence[JobView]) -> pd.DataFrame:
    """One row per job: kind, state, progress, times and the error, in the given order."""
    return pd.DataFrame(
        [
            {
                "id": job.id,
                "kind": job.kind,
                "state": job.state,
                "progress": f"{job.progress_done}/{job.progress_total}"
                + (f" ({job.step_text})" if job.step_text else ""),
                "created": job.created_at,
                "started": job.started_at,
                "finished": job.finished_at,
                "seconds": None if job.seconds is None else round(job.seconds, 1),
                "error": job.error or "",
            }
            for job in jobs
        ],
        columns=[
            "id",
            "kind",
            "state",
            "progress",
            "created",
            "started",
            "finished",
            "seconds",
            "error",
        ],
    )


def failed_table(items: Sequence[ItemView]) -> pd.DataFrame:
    """Failed items with their reasons."""
    return pd.DataFrame(
        [{"source": item.source_path, "reason": item.error or ""} for item in items],
        columns=["source", "reason"],
    )


def epoch_curves(epochs: Sequence[EpochView]) -> dict[str, pd.DataFrame]:
    """``{chart title: frame}`` with one column per split (``train``, ``val``) indexed
    by epoch; metrics with no recorded value are left out."""
    curves = {}
    for field, title in CURVES:
        points = [(e.epoch, e.split, getattr(e, field)) for e in epochs]
        points = [p for p in points if p[2] is not None]
        if points:
            frame = pd.DataFrame(points, columns=["epoch", "split", title])
            curves[title] = frame.pivot(index="epoch", columns="split", values=title).sort_index()
    return curves


def checkpoints_table(checkpoints: Sequence[CheckpointView]) -> pd.DataFrame:
    """Registered checkpoints with their validation IoU and recorded metrics."""
    return pd.DataFrame(
        [
            {
                "id": c.id,
                "epoch": c.epoch,
                "best": c.is_best,
                "val IoU": c.val_iou,
                "path": c.path,
                "created": c.created_at,
                "metrics": json.dumps(c.metrics) if c.metrics else "",
            }
            for c in checkpoints
        ],
        columns=["id", "epoch", "best", "val IoU", "path", "created", "metrics"],
    )
