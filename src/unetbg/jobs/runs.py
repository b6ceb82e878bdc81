"""Training run folders under ``<data dir>/runs``: what they hold, and pruning them.

A run keeps everything ``--resume`` needs (``last_model.pth`` with the optimizer state is
most of a run's size). :func:`plan_prune` keeps the best ``keep`` runs whole and, of the
others, only what is registered as a best checkpoint (with the run's small records:
config, metrics, log, plot): their other checkpoints go, and a run with no registered
best checkpoint goes entirely. The default model is the baseline: a run whose best
scores below it (as ``--checkpoint best`` compares them, on the validation sets both
were scored on) is never among the runs kept whole. A run whose job is not final, or
written to within ``UNETBG_HEARTBEAT_TIMEOUT`` (a foreground run may be training), is
never touched.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from unetbg.db.models import FINAL_JOB_STATES, Checkpoint, Job
from unetbg.jobs.checkpoints import beats_default
from unetbg.jobs.store import db_session
from unetbg.settings import Settings, get_settings


@dataclass(frozen=True)
class RunView:
    """One run folder."""

    path: str
    bytes: int
    #: Best validation IoU: its registered best checkpoint's, else the best in metrics.json.
    score: float | None
    job_id: str | None
    #: Its job's state (``None`` for a foreground run without a job).
    state: str | None
    #: Registered best checkpoints inside it.
    best_checkpoints: tuple[str, ...]
    #: Seconds since anything in it was last written.
    idle_s: float
    #: Whether its best beats the default model (``None``: cannot be compared).
    beats_default: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"best_checkpoints": list(self.best_checkpoints)}


@dataclass(frozen=True)
class PrunePlan:
    """What :func:`prune_runs` deletes: ``remove`` maps a run to the paths that go."""

    keep: list[RunView]
    busy: list[RunView]
    remove: list[tuple[RunView, list[str]]] = field(default_factory=list)
    #: Runs that scored below the default model: not kept whole, whatever ``keep``.
    below_default: list[RunView] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(_size(Path(p)) for _, paths in self.remove for p in paths)

    def to_dict(self) -> dict[str, Any]:
        return {
            "keep": [r.path for r in self.keep],
            "busy": [r.path for r in self.busy],
            "below_default": [r.path for r in self.below_default],
            "remove": {run.path: paths for run, paths in self.remove},
            "bytes": self.bytes,
        }


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _last_write(folder: Path) -> float:
    stamps = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()]
    return max(stamps, default=folder.stat().st_mtime)


def _best_record(folder: Path) -> dict[str, Any] | None:
    """The validation figures of the run's best epoch in its ``metrics.json`` (``val_``
    taken off the names, as a registered checkpoint records them), if any."""
    try:
        records = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    scored = [
        r
        for r in records
        if isinstance(r, dict) and isinstance(r.get("val_mean_iou", r.get("val_iou")), int | float)
    ]
    if not scored:
        return None
    best = max(scored, key=lambda r: r.get("val_mean_iou", r.get("val_iou")))
    return {k[len("val_") :]: v for k, v in best.items() if k.startswith("val_")}


def _score(metrics: dict[str, Any] | None) -> float | None:
    value = (metrics or {}).get("mean_iou", (metrics or {}).get("iou"))
    return value if isinstance(value, int | float) else None


def list_runs(settings: Settings | None = None) -> list[RunView]:
    """The run folders under ``<data dir>/runs``, best score first (unscored last)."""
    settings = settings or get_settings()
    root = settings.runs_dir.expanduser().resolve()
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    with db_session(settings) as session:
        best_rows = session.execute(
            select(Checkpoint.path, Checkpoint.job_id, Checkpoint.metrics).where(
                Checkpoint.is_best.is_(True)
            )
        ).all()
        states = dict(session.execute(select(Job.id, Job.state).where(Job.kind == "train")).all())
    now = time.time()
    runs = []
    for folder in folders:
        mine = [row for row in best_rows if Path(row.path).parent == folder]
        job_id = next((row.job_id for row in mine if row.job_id), None)
        job_id = job_id or (folder.name if folder.name in states else None)
        # The registered best's figures, else those of the best epoch in metrics.json.
        scored = [row for row in mine if isinstance((row.metrics or {}).get("iou"), int | float)]
        top = max(scored, key=lambda row: row.metrics["iou"], default=None)
        metrics = top.metrics if top is not None else _best_record(folder)
        checkpoint = top.path if top is not None else folder / "best_model.pth"
        score = top.metrics["iou"] if top is not None else _score(metrics)
        runs.append(
            RunView(
                path=str(folder),
                bytes=_size(folder),
                score=score,
                job_id=job_id,
                state=states.get(job_id) if job_id else None,
                best_checkpoints=tuple(row.path for row in mine),
                idle_s=now - _last_write(folder),
                beats_default=beats_default(metrics, checkpoint, settings) if metrics else None,
            )
        )
    # Best score first; among equal (or no) scores, the most recently written first.
    runs.sort(key=lambda r: (r.score is None, -(r.score or 0.0), r.idle_s))
    return runs


def plan_prune(keep: int, settings: Settings | None = None) -> PrunePlan:
    """Which files :func:`prune_runs` would delete to keep the best ``keep`` runs."""
    settings = settings or get_settings()
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    runs = list_runs(settings)
    busy = [
        r
        for r in runs
        if (r.state is not None and r.state not in FINAL_JOB_STATES)
        or r.idle_s < settings.heartbeat_timeout
    ]
    candidates = [r for r in runs if r not in busy]
    below = [r for r in candidates if r.beats_default is False]
    whole = [r for r in candidates if r not in below][:keep]
    plan = PrunePlan(keep=whole, busy=busy, below_default=below)
    for run in (r for r in candidates if r not in whole):
        folder = Path(run.path)
        if not run.best_checkpoints:
            paths = [str(folder)]
        else:
            kept = {str(Path(p)) for p in run.best_checkpoints}
            paths = [str(p) for p in sorted(folder.glob("*.pth")) if str(p) not in kept]
        if paths:
            plan.remove.append((run, paths))
    return plan


def prune_runs(plan: PrunePlan, settings: Settings | None = None) -> int:
    """Delete what ``plan`` lists and the registrations of deleted checkpoints; returns
    the bytes freed."""
    settings = settings or get_settings()
    freed = plan.bytes
    gone: list[str] = []
    for _, paths in plan.remove:
        for path in map(Path, paths):
            if path.is_dir():
                gone += [str(p) for p in path.glob("*.pth")]
                shutil.rmtree(path)
            elif path.exists():
                gone.append(str(path))
                path.unlink()
    if gone:
        with db_session(settings) as session:
            session.execute(delete(Checkpoint).where(Checkpoint.path.in_(gone)))
    return freed
