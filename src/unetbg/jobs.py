"""The job service: create jobs and their items, dispatch them, cancel, query.

Used by the CLI and the web page; everything here takes and returns plain values
(ids, paths, the ``*View`` dataclasses), never ORM objects bound to a session.

Two modes, chosen by :attr:`Settings.embedded`:

* **embedded** (no ``UNETBG_BROKER_URL``): :func:`dispatch` runs the very same Celery
  task functions in this process (``Task.apply``), one after the other;
* **broker**: :func:`dispatch` enqueues them by name on Redis. It is always called
  after the transaction that recorded the job has committed, so a worker can never
  pick up an id whose rows it cannot see yet.

In both modes the database is the record: progress, items, metrics and checkpoints
are read back from it, so watching a job survives a broker restart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from unetbg.db.models import (
    FINAL_JOB_STATES,
    ITEM_STATES,
    JOB_KINDS,
    JOB_STATES,
    Checkpoint,
    EpochMetric,
    Job,
    JobItem,
    utcnow,
)
from unetbg.db.schema import ensure_schema
from unetbg.db.session import session_scope
from unetbg.images import temporary_target
from unetbg.settings import Settings, get_settings, mask_url

log = logging.getLogger(__name__)

#: ``Job.error`` of a job whose worker stopped sending heartbeats; a redelivered
#: training message may still resume such a job (see ``unetbg.tasks.base``).
LOST_PREFIX = "lost: "
#: Item states a chunk task (re)claims: ``running`` ones belong to a worker that died.
OPEN_ITEM_STATES = ("pending", "running")


@contextmanager
def db_session(settings: Settings | None = None) -> Iterator[Session]:
    """A transaction on the configured database, its schema checked first.

    The embedded SQLite file is created/migrated on first use; a configured database
    that is behind raises ``SchemaOutOfDate`` (run ``unetbg db upgrade``).
    """
    settings = settings or get_settings()
    ensure_schema(settings.database_url)
    with session_scope(settings.database_url) as session:
        yield session


class JobError(Exception):
    """A request the service refuses, with a message meant for the person who made it."""


class JobNotFound(JobError):
    """No job has the given id (or the prefix given is ambiguous)."""


class NoCheckpointError(JobError):
    """The checkpoint asked for (``best``, a registered id, a path) does not exist."""


# ---------------------------------------------------------------------------------------
# Read-only views


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _iso(value: datetime | None) -> str | None:
    value = _aware(value)
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
        return (_aware(end) - _aware(self.started_at)).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: times as ISO 8601 strings, plus ``seconds`` (run time)."""
        out = asdict(self)
        for key in ("created_at", "started_at", "finished_at", "heartbeat_at"):
            out[key] = _iso(out[key])
        out["seconds"] = self.seconds
        return out

    @classmethod
    def of(cls, job: Job, items: dict[str, int] | None = None) -> JobView:
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
            created_at=_aware(job.created_at),
            started_at=_aware(job.started_at),
            finished_at=_aware(job.finished_at),
            heartbeat_at=_aware(job.heartbeat_at),
            items=items or {},
        )


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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = _iso(self.created_at)
        out["val_iou"] = self.val_iou
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


# ---------------------------------------------------------------------------------------
# Creating jobs


def create_train_job(
    preset: str = "balanced",
    overrides: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> str:
    """Record a training job for ``preset`` + ``overrides``; returns its id.

    The resolved config is validated now (so a typo fails here, not in a worker) and
    stored in the job's params with the run folder ``<data_dir>/runs/<job id>``,
    which must be on storage the workers share.
    """
    # Pure-python config module (no torch): validating here gives the submitter the error.
    from unetbg.training.config import resolve_config

    settings = settings or get_settings()
    try:
        cfg = resolve_config(preset, **(overrides or {}))
    except ValueError as exc:
        raise JobError(str(exc)) from None
    if not cfg.coco_root:
        raise JobError("training needs a COCO root: pass --coco-root DIR (or coco_root=DIR)")
    coco_root = Path(cfg.coco_root).expanduser().resolve()
    if not (coco_root / "annotations").is_dir():
        raise JobError(f"{cfg.coco_root} is not a COCO root (no annotations/ folder in it)")
    config = cfg.to_dict() | {"coco_root": str(coco_root)}
    with db_session(settings) as session:
        job = Job(kind="train", state="queued", progress_total=cfg.epochs)
        session.add(job)
        session.flush()
        job.params = {
            "preset": preset,
            "overrides": dict(overrides or {}),
            "config": config,
            "run_dir": str(settings.runs_dir / job.id),
        }
        return job.id


def create_evaluate_job(
    checkpoint: str,
    coco_root: str | os.PathLike,
    split: str = "val",
    threshold: float = 0.5,
    limit: int | None = None,
    device: str = "auto",
    settings: Settings | None = None,
) -> str:
    """Record a job that scores ``checkpoint`` (``best``, a registered id or a path)."""
    settings = settings or get_settings()
    path = resolve_checkpoint(checkpoint, settings)
    root = Path(coco_root).expanduser().resolve()
    if not (root / "annotations").is_dir():
        raise JobError(f"{coco_root} is not a COCO root (no annotations/ folder in it)")
    if not 0 < threshold < 1:
        raise JobError(f"threshold must be in (0, 1), got {threshold}")
    if limit is not None and limit < 1:
        raise JobError(f"limit must be >= 1, got {limit}")
    with db_session(settings) as session:
        job = Job(
            kind="evaluate",
            state="queued",
            progress_total=1,
            params={
                "checkpoint": path,
                "coco_root": str(root),
                "split": split,
                "threshold": threshold,
                "limit": limit,
                "device": device,
            },
        )
        session.add(job)
        session.flush()
        return job.id


def create_remove_dir_job(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    checkpoint: str = "best",
    *,
    kind: str = "cutout",
    output_format: str = "png",
    threshold: float | None = None,
    color: str | Sequence[int] = (255, 255, 255),
    background: str | None = None,
    chunk_size: int | None = None,
    batch_size: int = 4,
    overwrite: bool = False,
    follow_symlinks: bool = False,
    device: str = "auto",
    settings: Settings | None = None,
) -> str:
    """Scan ``input_dir`` and record the job with ALL its items in one transaction.

    Images whose output already exists are recorded as ``skipped`` (unless
    ``overwrite``), so running the same command again processes only what is missing
    or failed before. Raises :class:`JobError` for a bad folder, option or checkpoint.
    """
    # Folder planning and option checks are shared with `unetbg remove` and the web page.
    from unetbg.removal import OutputOptions, plan_folder

    settings = settings or get_settings()
    chunk_size = chunk_size or settings.chunk_size
    if chunk_size < 1:
        raise JobError(f"chunk size must be >= 1, got {chunk_size}")
    if batch_size < 1:
        raise JobError(f"batch size must be >= 1, got {batch_size}")
    checkpoint_path = resolve_checkpoint(checkpoint, settings)
    background_path = str(Path(background).expanduser().resolve()) if background else None
    try:
        parsed = OutputOptions(
            kind=kind,
            threshold=threshold,
            color=color,
            background=background_path,
            format=output_format,
        )
        planned = plan_folder(
            input_dir,
            output_dir,
            output_format=parsed.format,
            follow_symlinks=follow_symlinks,
            overwrite=overwrite,
        )
    except (ValueError, OSError) as exc:
        raise JobError(str(exc)) from None
    # Stored as JSON; the chunk task rebuilds the OutputOptions from it.
    options = {
        "kind": parsed.kind,
        "threshold": parsed.threshold,
        "color": list(parsed.color),
        "background": background_path,
        "format": parsed.format,
    }
    if not planned:
        raise JobError(f"no images found in {input_dir}")

    todo = [p for p in planned if not p.skip_reason]
    # A worker killed mid-write (lost host) leaves a hidden temporary beside an output
    # that this job will write again; no chunk of this job runs yet, so clear them now.
    remove_stale_temporaries(p.output for p in todo)
    with db_session(settings) as session:
        job = Job(
            kind="remove_dir",
            state="queued",
            progress_total=len(todo),
            params={
                "input_dir": str(Path(input_dir).expanduser().resolve()),
                "output_dir": str(Path(output_dir).expanduser().resolve()),
                "checkpoint": checkpoint_path,
                "options": options,
                "chunk_size": chunk_size,
                "batch_size": batch_size,
                "overwrite": overwrite,
                "device": device,
            },
        )
        session.add(job)
        session.flush()
        index = 0
        for plan in planned:
            item = JobItem(
                job_id=job.id,
                source_path=str(plan.source),
                # Skipped entries (links, non-images) may have no output at all.
                output_path=None if plan.output is None else str(plan.output),
            )
            if plan.skip_reason:
                item.state, item.error = "skipped", plan.skip_reason
            else:
                item.state, item.chunk = "pending", index // chunk_size
                index += 1
            session.add(item)
        session.flush()
        if not todo:
            settle_remove_dir(session, job)
        return job.id


#: ``unetbg.images.write_atomic``'s temporary beside ``NAME``: ``.NAME.<12 hex>.tmp``.


def remove_stale_temporaries(outputs: Iterable[str | os.PathLike]) -> int:
    """Delete the temporaries that a writer killed mid-write left beside ``outputs``.

    Called where nothing else writes those outputs: when a job is recorded (before any
    of its chunks runs) and when a chunk re-claims the images of a dead attempt. Such
    a file can then only be a remnant. Returns how many were removed.
    """
    wanted: dict[Path, set[str]] = {}
    for output in map(Path, outputs):
        wanted.setdefault(output.parent, set()).add(output.name)
    removed = 0
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # no folder yet: nothing was written there
            continue
        for entry in entries:
            if temporary_target(entry.name) in names and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def _output_options_args(options: dict[str, Any]) -> dict[str, Any]:
    """``OutputOptions`` keyword arguments from the JSON-stored options."""
    return dict(options) | {"color": tuple(options["color"])}


def output_options(params: dict[str, Any]):
    """The job's :class:`unetbg.removal.OutputOptions` (used by the chunk task)."""
    from unetbg.removal import OutputOptions

    return OutputOptions(**_output_options_args(params["options"]))


# ---------------------------------------------------------------------------------------
# Checkpoints


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_checkpoint(spec: str, settings: Settings | None = None) -> str:
    """Absolute path for ``best`` (registered, best val IoU), a registered id, or a path."""
    settings = settings or get_settings()
    spec = str(spec)
    if spec == "best":
        best = best_checkpoint(settings)
        if best is None:
            raise NoCheckpointError(
                "no trained checkpoint is registered yet. Train one with "
                "`unetbg submit-train --preset smoke --coco-root DIR` (or `unetbg train`), "
                "or pass a checkpoint file with --checkpoint PATH"
            )
        path = best.path
    elif spec.isdigit() and not Path(spec).exists():
        with db_session(settings) as session:
            row = session.get(Checkpoint, int(spec))
            if row is None:
                raise NoCheckpointError(
                    f"no registered checkpoint with id {spec} (see `unetbg checkpoints`)"
                )
            path = row.path
    else:
        path = spec
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise NoCheckpointError(f"checkpoint file not found: {resolved}")
    return str(resolved)


def best_checkpoint(settings: Settings | None = None) -> CheckpointView | None:
    """The registered best-model checkpoint with the highest validation IoU, if any."""
    candidates = [
        c for c in list_checkpoints(settings=settings) if c.is_best and c.val_iou is not None
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c.val_iou, c.created_at))


def register_checkpoint(
    session: Session,
    job_id: str | None,
    path: str | os.PathLike,
    epoch: int | None,
    metrics: dict[str, Any] | None,
    is_best: bool,
) -> Checkpoint:
    """Insert or refresh the row for ``path`` (a run rewrites ``best``/``last`` in place)."""
    path = str(Path(path).resolve())
    row = session.scalars(
        select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.path == path)
    ).first()
    if row is None:
        row = Checkpoint(job_id=job_id, path=path)
        session.add(row)
    row.epoch, row.metrics, row.is_best = epoch, jsonable(metrics), is_best
    row.sha256 = file_sha256(path)
    row.created_at = utcnow()
    return row


def jsonable(value: Any) -> Any:
    """``value`` with numpy/torch scalars turned into plain JSON numbers."""
    return json.loads(json.dumps(value, default=float)) if value is not None else None


def upsert_epoch_metrics(
    session: Session, job_id: str, epoch: int, split: str, metrics: dict[str, Any], lr: float | None
) -> None:
    """Write one epoch's figures; a resumed run rewrites the epoch instead of adding one."""
    row = session.scalars(
        select(EpochMetric).where(
            EpochMetric.job_id == job_id, EpochMetric.epoch == epoch, EpochMetric.split == split
        )
    ).first()
    if row is None:
        row = EpochMetric(job_id=job_id, epoch=epoch, split=split)
        session.add(row)
    for name in ("loss", "iou", "dice", "pixel_accuracy"):
        value = metrics.get(name)
        setattr(row, name, float(value) if value is not None else None)
    row.lr = float(lr) if lr is not None else None


# ---------------------------------------------------------------------------------------
# Dispatch


def task_ids(job: JobView | Job, chunks: Iterable[int] = ()) -> list[str]:
    """Celery task ids of a job: readable in Flower, and computable again to revoke."""
    if job.kind == "remove_dir":
        return [f"{job.id}-chunk{chunk:04d}" for chunk in chunks]
    return [f"{job.id}-{job.kind}"]


def _pending_chunks(session: Session, job_id: str) -> dict[int, list[int]]:
    rows = session.execute(
        select(JobItem.chunk, JobItem.id)
        .where(JobItem.job_id == job_id, JobItem.state.in_(OPEN_ITEM_STATES))
        .order_by(JobItem.chunk, JobItem.id)
    )
    chunks: dict[int, list[int]] = {}
    for chunk, item_id in rows:
        chunks.setdefault(chunk, []).append(item_id)
    return chunks


def dispatch(job_id: str, settings: Settings | None = None) -> list[str]:
    """Start a recorded job: enqueue its tasks (broker) or run them here (embedded).

    Call it after the job's transaction committed (the ``create_*`` functions commit
    before returning). Returns the enqueued task ids (empty in embedded mode, where
    this returns only when the job is final).
    """
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = _get(session, job_id)
        if job.state in FINAL_JOB_STATES:
            return []
        chunks = _pending_chunks(session, job.id) if job.kind == "remove_dir" else {}
        view = JobView.of(job)
    if settings.embedded:
        run_inline(view, chunks, settings)
        return []

    from unetbg.workers.app import EVALUATE_TASK, REMOVE_CHUNK_TASK, TRAIN_TASK, get_app

    app = get_app(settings)

    sent: list[str] = []
    try:
        if view.kind == "remove_dir":
            for chunk, item_ids in chunks.items():
                (task_id,) = task_ids(view, [chunk])
                app.send_task(
                    REMOVE_CHUNK_TASK,
                    args=[view.id, item_ids],
                    task_id=task_id,
                    argsrepr=f"job={view.id} chunk={chunk} items={len(item_ids)}",
                )
                sent.append(task_id)
        else:
            name = TRAIN_TASK if view.kind == "train" else EVALUATE_TASK
            (task_id,) = task_ids(view)
            app.send_task(name, args=[view.id], task_id=task_id, argsrepr=f"job={view.id}")
            sent.append(task_id)
    except Exception as exc:  # broker unreachable after the publish retries
        _abort_dispatch(
            view.id, f"could not enqueue on {mask_url(settings.broker_url)}: {exc}", settings
        )
        raise JobError(
            f"job {view.id} was recorded but could not be queued: broker "
            f"{mask_url(settings.broker_url)} unreachable ({exc}); it is marked failed"
        ) from exc
    log.info("job %s: enqueued %d task(s)", view.id, len(sent))
    return sent


def _abort_dispatch(job_id: str, reason: str, settings: Settings) -> None:
    """A job whose tasks could not all be queued: stop what was sent, fail the rest."""
    fail_job(job_id, reason, settings)


def fail_job(
    job_id: str,
    reason: str,
    settings: Settings | None = None,
    item_states: Sequence[str] = ("pending",),
) -> None:
    """Fail a job that nothing will finish, with ``reason`` as its error.

    Its items in ``item_states`` fail with the same reason and the cancel flag is set,
    so chunks still queued drop themselves. A job already final is left as it is.
    Used when its tasks cannot be queued, when the embedded runner died, and when a
    worker cannot use the job's device.
    """
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = _get(session, job_id, for_update=True)
        if job.state in FINAL_JOB_STATES:
            return
        job.cancel_requested = True
        if job.kind == "remove_dir":
            session.execute(
                update(JobItem)
                .where(JobItem.job_id == job.id, JobItem.state.in_(item_states))
                .values(state="failed", error=reason, updated_at=utcnow())
            )
            settle_remove_dir(session, job)  # progress and the item summary
        # Failed with this reason, even where settling alone would say "partial".
        job.state, job.error = "failed", reason
        job.finished_at = job.finished_at or utcnow()


def run_inline(
    job: JobView, chunks: dict[int, list[int]], settings: Settings | None = None
) -> None:
    """Embedded mode: run the job's Celery tasks in this process, in order.

    ``Task.apply`` runs the task through Celery's tracer exactly as a worker does
    (the base class's failure handling included), just without a broker.
    """
    # Importing the tasks module registers them on the unetbg app, whose config
    # (JSON, routing) also applies to eager runs.
    import unetbg.workers.app  # noqa: F401
    from unetbg.tasks.evaluate import evaluate_job
    from unetbg.tasks.remove import remove_chunk
    from unetbg.tasks.train import train_job

    if job.kind == "remove_dir":
        for chunk, item_ids in chunks.items():
            if get_job(job.id, settings).final:  # cancelled/failed while earlier chunks ran
                break
            (task_id,) = task_ids(job, [chunk])
            remove_chunk.apply(args=[job.id, item_ids], task_id=task_id)
        return
    task = train_job if job.kind == "train" else evaluate_job
    task.apply(args=[job.id], task_id=task_ids(job)[0])


# ---------------------------------------------------------------------------------------
# Job state


def item_counts(session: Session, job_id: str) -> dict[str, int]:
    """How many items of ``job_id`` are in each state (states with none are left out)."""
    rows = session.execute(
        select(JobItem.state, func.count()).where(JobItem.job_id == job_id).group_by(JobItem.state)
    )
    return {state: count for state, count in rows}


def finish(job: Job, state: str, error: str | None = None) -> None:
    """Move ``job`` to a final state (no-op when it already is final)."""
    if job.state in FINAL_JOB_STATES:
        return
    job.state, job.finished_at = state, utcnow()
    if error is not None:
        job.error = error


def settle_remove_dir(session: Session, job: Job) -> None:
    """Refresh a remove-dir job's progress; make it final once every item is.

    Final state: ``cancelled`` if a cancel was requested and some items never ran,
    ``failed`` if every processed item failed, ``partial`` if some did,
    ``succeeded`` otherwise (skipped items count as done).
    """
    session.flush()
    counts = Counter(item_counts(session, job.id))
    job.progress_done = counts["succeeded"] + counts["failed"] + counts["cancelled"]
    if counts["pending"] + counts["running"]:
        return
    summary = {state: counts[state] for state in ITEM_STATES if state not in OPEN_ITEM_STATES}
    job.result = summary
    if counts["cancelled"]:
        finish(job, "cancelled")
    elif counts["failed"] and not counts["succeeded"]:
        finish(job, "failed", f"all {counts['failed']} images failed")
    elif counts["failed"]:
        finish(
            job,
            "partial",
            f"{counts['failed']} of {counts['failed'] + counts['succeeded']} images failed "
            f"(list them with `unetbg status {job.id} --items failed`)",
        )
    else:
        finish(job, "succeeded")


def worker_identity() -> str:
    """``host:pid`` of this process, stored on the job it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_alive(identity: str | None) -> bool | None:
    """Whether the process named by :func:`worker_identity` runs; ``None`` if unknowable.

    Only a process on this host can be checked; for another host the heartbeat decides.
    """
    if not identity or ":" not in identity:
        return None
    host, _, pid = identity.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def heartbeat_fresh(job: Job | JobView, settings: Settings, now: datetime | None = None) -> bool:
    """Whether the job's heartbeat is younger than ``Settings.heartbeat_timeout``."""
    beat = _aware(job.heartbeat_at)
    if beat is None:
        return False
    now = now or utcnow()
    return now - beat < timedelta(seconds=settings.heartbeat_timeout)


def claimant_fresh(
    session: Session,
    job: Job,
    claimant: str | None,
    settings: Settings,
    now: datetime | None = None,
) -> bool:
    """Whether the chunk attempt ``claimant`` (``JobItem.claimed_by``) reported lately.

    Lately means within ``heartbeat_timeout``: an item outcome it wrote, or the job's
    heartbeat while it is the job's latest claimant. ``None`` (an unknown claimant)
    counts any item outcome and the job's heartbeat. Used where the pid cannot be
    checked (another host).
    """
    now = now or utcnow()
    if (claimant is None or job.worker_host == claimant) and heartbeat_fresh(job, settings, now):
        return True
    # Only what a chunk wrote: pending/skipped rows keep their creation time.
    query = select(func.max(JobItem.updated_at)).where(
        JobItem.job_id == job.id, JobItem.state.in_(("running", "succeeded", "failed"))
    )
    if claimant is not None:
        query = query.where(JobItem.claimed_by == claimant)
    latest = _aware(session.scalar(query))
    return latest is not None and now - latest < timedelta(seconds=settings.heartbeat_timeout)


def mark_lost_jobs(settings: Settings | None = None, now: datetime | None = None) -> list[str]:
    """Fail running work whose worker is gone; return the ids of the jobs concerned.

    A train/evaluate job is lost when its heartbeat is older than
    ``Settings.heartbeat_timeout`` and its worker is not known to be alive (a process
    on this host whose pid exists is alive: never the caller's own run, as in
    embedded mode). For remove-dir, the ``running`` images of each claimant that is
    not alive and has not reported for that long are failed (``lost: …``) and the
    job settles, so ``--wait`` never hangs on a dead worker.
    Re-running the same remove-dir then redoes exactly those images.
    """
    settings = settings or get_settings()
    now = now or utcnow()
    lost = []
    with db_session(settings) as session:
        running = session.scalars(select(Job).where(Job.state == "running")).all()
        for job in running:
            if job.kind == "remove_dir":
                items = session.scalars(
                    select(JobItem).where(JobItem.job_id == job.id, JobItem.state == "running")
                ).all()
                gone: dict[str | None, bool] = {}
                for claimant in {item.claimed_by for item in items}:
                    # A dead pid alone is not enough: its redelivered chunk (seconds
                    # away) takes the images over and must find them still running.
                    gone[claimant] = worker_alive(claimant) is not True and not claimant_fresh(
                        session, job, claimant, settings, now
                    )
                stale = [item for item in items if gone[item.claimed_by]]
                if not stale:
                    continue
                for item in stale:
                    item.state = "failed"
                    item.error = (
                        f"{LOST_PREFIX}worker {item.claimed_by} stopped reporting "
                        f"(no update since {_iso(item.updated_at)})"
                    )
                settle_remove_dir(session, job)
                lost.append(job.id)
            elif (
                not heartbeat_fresh(job, settings, now)
                and worker_alive(job.worker_host) is not True
            ):
                # Heartbeat age, unless the pid is known alive: a killed child's message
                # is redelivered within seconds and must find the job still running.
                finish(
                    job,
                    "failed",
                    f"{LOST_PREFIX}worker {job.worker_host} stopped reporting "
                    f"(last heartbeat {_iso(job.heartbeat_at)}); a redelivered task resumes it",
                )
                lost.append(job.id)
    for job_id in lost:
        log.warning("job %s: worker lost", job_id)
    return lost


# ---------------------------------------------------------------------------------------
# Cancel


def cancel_job(job_id: str, settings: Settings | None = None) -> JobView:
    """Request cancellation; returns the job as it is afterwards.

    Items not yet started become ``cancelled`` now and their queued chunk tasks are
    revoked (without terminate). Running work stops cooperatively: a chunk at its
    next batch of images, training at its next step, keeping its last checkpoint.
    A final job is left as it is.
    """
    settings = settings or get_settings()
    revoke: list[str] = []
    with db_session(settings) as session:
        job = _get(session, job_id, for_update=True)
        if job.state in FINAL_JOB_STATES:
            return _view(session, job)
        job.cancel_requested = True
        if job.kind == "remove_dir":
            pending = session.execute(
                select(JobItem.chunk)
                .where(JobItem.job_id == job.id, JobItem.state == "pending")
                .distinct()
            ).scalars()
            revoke = task_ids(job, sorted(c for c in pending if c is not None))
            session.execute(
                update(JobItem)
                .where(JobItem.job_id == job.id, JobItem.state == "pending")
                .values(state="cancelled", error="cancelled before it started", updated_at=utcnow())
            )
            settle_remove_dir(session, job)
        elif job.state == "queued" or not heartbeat_fresh(job, settings):
            # Nobody is running it (or its worker is gone): nothing else will finish it.
            revoke = task_ids(job)
            finish(job, "cancelled")
        view = _view(session, job)
    if revoke and not settings.embedded:
        from unetbg.workers.app import get_app

        # No terminate: a running chunk finishes its current image and stops itself.
        get_app(settings).control.revoke(revoke)
    return view


# ---------------------------------------------------------------------------------------
# Queries


def _get(session: Session, job_id: str, for_update: bool = False) -> Job:
    job_id = (job_id or "").strip()
    query = select(Job).where(Job.id == job_id)
    if for_update:
        query = query.with_for_update()
    job = session.scalars(query).first()
    if job is None and len(job_id) >= 4:
        # A unique prefix is enough, as with git hashes.
        matches = session.scalars(select(Job).where(Job.id.startswith(job_id)).limit(2)).all()
        if len(matches) == 1:
            job = matches[0]
        elif len(matches) > 1:
            raise JobNotFound(f"job id prefix {job_id!r} is ambiguous; give more characters")
    if job is None:
        raise JobNotFound(f"no job {job_id!r} (see `unetbg jobs`)")
    return job


def _view(session: Session, job: Job) -> JobView:
    if job.kind != "remove_dir":
        return JobView.of(job)
    # Chunks commit each image but settle the job's progress once per chunk; the
    # item counts are always current, so progress is taken from them.
    counts = item_counts(session, job.id)
    view = JobView.of(job, counts)
    done = sum(counts.get(state, 0) for state in ("succeeded", "failed", "cancelled"))
    return dataclasses.replace(view, progress_done=done)


def get_job(job_id: str, settings: Settings | None = None) -> JobView:
    """One job with its item counts; raises :class:`JobNotFound`."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        return _view(session, _get(session, job_id))


def list_jobs(
    state: str | None = None,
    kind: str | None = None,
    limit: int = 20,
    settings: Settings | None = None,
) -> list[JobView]:
    """Most recent jobs first, optionally filtered."""
    settings = settings or get_settings()
    if state is not None and state not in JOB_STATES:
        raise JobError(f"unknown state {state!r}; valid states: {', '.join(JOB_STATES)}")
    if kind is not None and kind not in JOB_KINDS:
        raise JobError(f"unknown kind {kind!r}; valid kinds: {', '.join(JOB_KINDS)}")
    query = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if state:
        query = query.where(Job.state == state)
    if kind:
        query = query.where(Job.kind == kind)
    with db_session(settings) as session:
        return [_view(session, job) for job in session.scalars(query)]


def list_items(
    job_id: str, states: Sequence[str] | None = None, settings: Settings | None = None
) -> list[ItemView]:
    """The items of a remove-dir job (all, or only those in ``states``)."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = _get(session, job_id)
        query = select(JobItem).where(JobItem.job_id == job.id).order_by(JobItem.id)
        if states:
            query = query.where(JobItem.state.in_(states))
        return [
            ItemView(i.id, i.source_path, i.output_path, i.state, i.error, i.duration_s, i.chunk)
            for i in session.scalars(query)
        ]


def list_checkpoints(
    job_id: str | None = None, settings: Settings | None = None
) -> list[CheckpointView]:
    """Registered checkpoints, newest first (of one job when ``job_id`` is given)."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        query = select(Checkpoint).order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
        if job_id:
            query = query.where(Checkpoint.job_id == _get(session, job_id).id)
        return [
            CheckpointView(
                c.id,
                c.job_id,
                c.path,
                c.epoch,
                c.metrics,
                c.sha256,
                c.is_best,
                _aware(c.created_at),
            )
            for c in session.scalars(query)
        ]


def list_epoch_metrics(job_id: str, settings: Settings | None = None) -> list[EpochView]:
    """A training job's per-epoch figures, by epoch then split."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = _get(session, job_id)
        query = (
            select(EpochMetric)
            .where(EpochMetric.job_id == job.id)
            .order_by(EpochMetric.epoch, EpochMetric.split)
        )
        return [
            EpochView(m.epoch, m.split, m.loss, m.iou, m.dice, m.pixel_accuracy, m.lr)
            for m in session.scalars(query)
        ]


def wait_for_job(
    job_id: str,
    on_update: Callable[[JobView], None] | None = None,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
    settings: Settings | None = None,
) -> JobView:
    """Poll the database until the job is final; ``on_update`` sees every snapshot.

    Polling the database (not the broker) keeps working across a Redis restart, and
    :func:`mark_lost_jobs` runs each round so a dead worker cannot make this hang.
    Raises ``TimeoutError`` after ``timeout_s``.
    """
    settings = settings or get_settings()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    # Lost-worker checks write; a tenth of the heartbeat timeout is often enough.
    check_every = max(1.0, settings.heartbeat_timeout / 10)
    checked = float("-inf")
    while True:
        if time.monotonic() - checked >= check_every:
            mark_lost_jobs(settings)
            checked = time.monotonic()
        view = get_job(job_id, settings)
        if on_update is not None:
            on_update(view)
        if view.final:
            return view
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {view.state} after {timeout_s} s")
        time.sleep(poll_s)
