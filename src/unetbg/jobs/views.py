"""Read-only snapshots of jobs, items, checkpoints and epoch figures.

What the service hands out: plain frozen dataclasses, usable after the session that
read them has closed, with ``to_dict()`` for JSON.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from unetbg.db.models import FINAL_JOB_STATES, Job, utcnow


def aware(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (SQLite hands back naive ones; all are UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def iso(value: datetime | None) -> str | None:
    """``value`` as ISO 8601 text in UTC, or ``None``."""
    value = aware(value)
    return value.isoformat() if value else None


@dataclass(frozen=True)
class JobView:
    """A snapshot of one job. ``items`` counts its items by state (remove-dir only)."""

    id: str
    kind: str
    state: str
    params: dict[str, Any]
    progress_done: int
    progress_total: int
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    worker_host: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    items: dict[str, int] = field(default_factory=dict)
    #: A training job's position in its epoch (see :func:`step_text`), while it runs.
    step_progress: dict[str, Any] | None = None
    #: Remove-dir only: how many written outputs show no person (``None`` otherwise).
    no_person: int | None = None

    @property
    def final(self) -> bool:
        """Whether the job has ended (succeeded, partial, failed or cancelled)."""
        return self.state in FINAL_JOB_STATES

    @property
    def seconds(self) -> float | None:
        """Run time so far (or in total once final)."""
        if self.started_at is None:
            return None
        end = self.finished_at or utcnow()
        return (aware(end) - aware(self.started_at)).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: times as ISO 8601 strings, plus ``seconds`` (run time)."""
        out = asdict(self)
        for key in ("created_at", "started_at", "finished_at", "heartbeat_at"):
            out[key] = iso(out[key])
        out["seconds"] = self.seconds
        return out

    @classmethod
    def of(
        cls, job: Job, items: dict[str, int] | None = None, no_person: int | None = None
    ) -> JobView:
        """Snapshot of the ORM row ``job`` (usable after its session closes)."""
        return cls(
            id=job.id,
            kind=job.kind,
            state=job.state,
            params=dict(job.params or {}),
            progress_done=job.progress_done,
            progress_total=job.progress_total,
            result=job.result,
            error=job.error,
            cancel_requested=job.cancel_requested,
            worker_host=job.worker_host,
            attempts=job.attempts,
            created_at=aware(job.created_at),
            started_at=aware(job.started_at),
            finished_at=aware(job.finished_at),
            heartbeat_at=aware(job.heartbeat_at),
            items=items or {},
            step_progress=job.step_progress,
            no_person=no_person,
        )

    @property
    def step_text(self) -> str | None:
        """``epoch 2/3, step 40/100, loss 0.4120, 12.3 img/s, ETA 3m20s`` while a training
        job runs; ``None`` otherwise."""
        return None if self.final else step_text(self.step_progress)


def step_text(progress: dict[str, Any] | None) -> str | None:
    """The ``step_progress`` a training task records, for people (``None`` if empty)."""
    if not progress:
        return None
    parts = [
        f"epoch {progress['epoch']}/{progress['epochs']}",
        f"step {progress['step']}/{progress['steps']}",
    ]
    if progress.get("loss") is not None:
        parts.append(f"loss {progress['loss']:.4f}")
    if progress.get("images_per_s"):
        parts.append(f"{progress['images_per_s']:.1f} img/s")
    if progress.get("eta_s") is not None:
        minutes, seconds = divmod(round(progress["eta_s"]), 60)
        hours, minutes = divmod(minutes, 60)
        eta = f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
        parts.append(f"ETA {eta} (training steps)")
    return ", ".join(parts)


@dataclass(frozen=True)
class ItemView:
    """One image of a remove-dir job: where from, where to, its state and why."""

    id: int
    source_path: str
    output_path: str | None
    state: str
    error: str | None
    duration_s: float | None
    chunk: int | None
    #: How many times a worker claimed it (more than once: a worker died holding it).
    attempts: int = 0
    #: Share (0-1) of its output that shows the person; ``None`` until written.
    person_share: float | None = None
    #: Written, but the output shows no person (``removal.presence.no_person``).
    no_person: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckpointView:
    id: int
    job_id: str | None
    path: str
    epoch: int | None
    metrics: dict[str, Any] | None
    sha256: str
    is_best: bool
    created_at: datetime

    @property
    def val_iou(self) -> float | None:
        """Validation IoU recorded with the checkpoint (``fit`` passes the val metrics)."""
        value = (self.metrics or {}).get("iou")
        return float(value) if isinstance(value, int | float) else None

    @property
    def bytes(self) -> int | None:
        """The file's size on disk now (``None`` when it is gone)."""
        try:
            return os.stat(self.path).st_size
        except OSError:
            return None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = iso(self.created_at)
        out["val_iou"] = self.val_iou
        out["bytes"] = self.bytes
        return out


@dataclass(frozen=True)
class EpochView:
    """One split's figures (``train`` or ``val``) for one epoch of a training job."""

    epoch: int
    split: str
    loss: float | None
    iou: float | None
    dice: float | None
    pixel_accuracy: float | None
    lr: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
