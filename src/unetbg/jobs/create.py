"""Recording new jobs (validated now, so a mistake fails here and not in a worker); which
checkpoint a job is to use is :mod:`unetbg.jobs.checkpoints`' question.

Every ``create_*`` function records the job in one transaction and returns its id once
committed; :func:`unetbg.jobs.dispatch` starts it. A remove-dir job's items follow its
row in batches of :data:`RECORD_BATCH`, each committed at once (issue 23: one
transaction for a million items held SQLite's write lock for 93 s, and every other
command failed meanwhile); the job says ``recording`` until the last one, so that
settling never ends it early.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from unetbg.db.models import Job, JobItem, utcnow
from unetbg.durable import remove_stale_temporaries
from unetbg.jobs.broker import check_broker
from unetbg.jobs.checkpoints import choose_checkpoint, resolve_checkpoint
from unetbg.jobs.errors import JobError
from unetbg.jobs.liveness import heartbeat_fresh, worker_identity
from unetbg.jobs.records import (
    RECORDING,
    lock_job,
    reopen_job,
    settle_remove_dir,
    shift_counts,
)
from unetbg.jobs.store import db_session, find_job
from unetbg.jobs.watched import new_watch
from unetbg.settings import Settings, get_settings

if TYPE_CHECKING:
    from unetbg.removal import OutputOptions, PlannedItem, RemovalRequest, RunOptions
    from unetbg.training.config import TrainConfig

log = logging.getLogger(__name__)

#: Items per transaction of a remove-dir job's recording: each holds the write lock for
#: tens of milliseconds, so other commands and workers go on meanwhile.
RECORD_BATCH = 5_000


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
    if not cfg.coco_root and not cfg.data:
        raise JobError(
            "training needs data: a COCO root (--coco-root DIR) or sources "
            "(--data KIND:PATH[:WEIGHT])"
        )
    # Resolved once, here: the worker's working folder is not the submitter's.
    cfg = cfg.with_absolute_paths()
    for source in cfg.sources():
        needed = "annotations" if source.kind == "coco" else "images"
        if not (Path(source.path) / needed).is_dir():
            raise JobError(
                f"{source.path} is not a {source.kind} folder (no {needed}/ folder in it)"
            )
    config = _config_params(cfg)
    check_broker(settings)
    with db_session(settings) as session:
        job = Job(kind="train", state="queued", progress_total=cfg.epochs)
        session.add(job)
        session.flush()
        job.params = {
            "preset": preset,
            "overrides": dict(overrides or {}),
            "config": config,
            "run_dir": str(absolute(settings.runs_dir) / job.id),
        }
        return job.id


def _config_params(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as a job stores it: every path absolute (it crosses into workers)."""
    config = cfg.with_absolute_paths().to_dict()
    if cfg.encoder_weights not in (None, "imagenet", "none"):  # a local file
        config["encoder_weights"] = str(absolute(cfg.encoder_weights))
    return config


def record_train_run(
    cfg: TrainConfig, run_dir: str | os.PathLike, settings: Settings | None = None
) -> str:
    """Record a training run this process is about to run in the foreground (``unetbg
    train``) as a job of kind train, so it is listed, its epochs and checkpoints belong
    to it and the web page draws its curves. A run folder that already belongs to a
    training job (``--resume``) continues that job; returns the job's id."""
    settings = settings or get_settings()
    run_dir, config = absolute(run_dir), _config_params(cfg)
    with db_session(settings) as session:
        job = _train_job_of(session, run_dir)
        if job is not None:
            _reopen(job, settings)
            job.params = dict(job.params) | {"config": config}
            job.progress_total = config["epochs"]
            return job.id
        job = Job(kind="train", state="queued", progress_total=config["epochs"])
        session.add(job)
        session.flush()
        job.params = {
            "preset": config.get("preset"),
            "config": config,
            "run_dir": str(run_dir),
            "foreground": True,
        }
        return job.id


def resume_train_job(
    run_or_job: str, overrides: dict[str, Any] | None = None, settings: Settings | None = None
) -> str:
    """Make a stopped training run a queued job again, to continue from its
    ``last_model.pth`` (``submit-train --resume``): ``run_or_job`` is a training job's id
    (or prefix) or a run folder. The job that ran there is reopened (its epochs and
    checkpoints stay its own); a folder no job knows (an older foreground run) gets a new
    job with the folder's ``config.json``. ``overrides`` change that config (as
    ``train --resume`` does, e.g. more epochs). Raises :class:`JobError` when there is
    nothing to continue, or the job is still queued or running."""
    from unetbg.training.config import TrainConfig

    settings = settings or get_settings()
    folder = Path(run_or_job).expanduser()
    check_broker(settings)
    with db_session(settings) as session:
        if folder.is_dir():
            run_dir, job = absolute(folder), _train_job_of(session, absolute(folder))
        else:
            job = find_job(session, run_or_job)
            if job.kind != "train":
                raise JobError(f"job {job.id} is a {job.kind} job, not a training run")
            run_dir = Path(job.params["run_dir"])
        if not (run_dir / "last_model.pth").is_file():
            raise JobError(f"{run_dir} holds no last_model.pth to continue from")
        try:
            saved = (
                job.params["config"] if job else json.loads((run_dir / "config.json").read_text())
            )
            cfg = TrainConfig.from_dict(dict(saved) | dict(overrides or {}))
        except (OSError, ValueError, TypeError) as exc:
            raise JobError(f"cannot continue {run_dir}: {exc}") from None
        config = _config_params(cfg)
        if job is None:
            job = Job(kind="train", state="queued")
            session.add(job)
            session.flush()
            job.params = {"preset": cfg.preset, "run_dir": str(run_dir)}
        else:
            _reopen(job, settings)
        job.params = dict(job.params) | {"config": config}
        job.progress_total = cfg.epochs
        return job.id


def forget_train_run(job_id: str, settings: Settings | None = None) -> None:
    """Delete the record of a foreground run that failed before its first step (a usage
    error, such as a folder that is not a COCO root): as if it had never been started."""
    with db_session(settings or get_settings()) as session:
        job = find_job(session, job_id)
        if job.kind == "train" and (job.params or {}).get("foreground") and not job.attempts > 1:
            session.delete(job)


def _train_job_of(session: Session, run_dir: Path) -> Job | None:
    """The newest training job whose run folder is ``run_dir``, if any."""
    rows = session.scalars(
        select(Job).where(Job.kind == "train").order_by(Job.created_at.desc())
    ).all()
    return next((j for j in rows if (j.params or {}).get("run_dir") == str(run_dir)), None)


def _reopen(job: Job, settings: Settings) -> None:
    """Queue a stopped training job again (its record kept); refuse a live one."""
    if job.state == "queued" or (job.state == "running" and heartbeat_fresh(job, settings)):
        raise JobError(
            f"job {job.id} is {job.state}: nothing to continue (`unetbg cancel {job.id}` first)"
        )
    reopen_job(job)


def create_evaluate_job(
    checkpoint: str,
    coco_root: str | os.PathLike | None,
    split: str = "val",
    threshold: float = 0.5,
    limit: int | None = None,
    device: str = "auto",
    settings: Settings | None = None,
    *,
    data: Sequence[str] = (),
    val_percent: int = 10,
    batch_size: int = 8,
    image_size: int | None = None,
    switches: dict[str, bool | None] | None = None,
) -> str:
    """Record a job that scores ``checkpoint`` (``best``, a registered id or a path) as
    ``unetbg evaluate`` would, with the same options: ``coco_root``'s ``split`` and/or
    the ``data`` sources (``KIND:PATH`` specs, paths absolute), and ``switches`` (the
    checkpoint's preprocessing overrides, ``RunOptions`` switches by name)."""
    settings = settings or get_settings()
    model = choose_checkpoint(checkpoint, settings)
    if coco_root is None and not data:
        raise JobError("nothing to evaluate on: give a COCO root or data sources")
    root = absolute(coco_root) if coco_root is not None else None
    if root is not None and not (root / "annotations").is_dir():
        raise JobError(f"{coco_root} is not a COCO root (no annotations/ folder in it)")
    if image_size is not None and (image_size < 32 or image_size % 32):
        raise JobError(f"image size must be a multiple of 32, got {image_size}")
    if not 0 < threshold < 1:
        raise JobError(f"threshold must be in (0, 1), got {threshold}")
    if limit is not None and limit < 1:
        raise JobError(f"limit must be >= 1, got {limit}")
    check_broker(settings)
    with db_session(settings) as session:
        job = Job(
            kind="evaluate",
            state="queued",
            progress_total=1,
            params={
                "checkpoint": model.path,
                "model": model.to_params(),
                "coco_root": None if root is None else str(root),
                "data": list(data),
                "split": split,
                "threshold": threshold,
                "limit": limit,
                "device": device,
                "val_percent": val_percent,
                "batch_size": batch_size,
                "image_size": image_size,
                "switches": dict(switches or {}),
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
    output: OutputOptions | None = None,
    run: RunOptions | None = None,
    chunk_size: int | None = None,
    overwrite: bool = False,
    follow_symlinks: bool = False,
    watch: bool = False,
    settings: Settings | None = None,
    **run_fields: Any,
) -> str:
    """Scan ``input_dir`` and record the job with all its items (in batches, see the
    module doc); returns its id once the last batch committed.

    ``output``: what to write (default: soft cut-outs as PNG); ``run``: how the workers
    run the model (:class:`unetbg.removal.RunOptions`), or its fields as keywords
    (``batch_size=2``, ``device="cuda"``). Images whose output already exists are
    recorded as ``skipped`` (unless ``overwrite``), so running the same command again
    processes only what is missing or failed before. Raises :class:`JobError` for a bad
    folder, option or checkpoint. ``watch``: this process goes on to watch the folder
    (:mod:`unetbg.jobs.watched`); the job is recorded watched, so it stays open after
    its first items, and a folder with no image yet is fine.
    """
    settings = settings or get_settings()
    chunk_size = chunk_size or settings.chunk_size
    if chunk_size < 1:
        raise JobError(f"chunk size must be >= 1, got {chunk_size}")
    request = _removal_request(checkpoint, output, run, run_fields, settings)
    # Resolved once, here: the items' paths derive from these and cross to the workers,
    # whose working directory is not the submitter's.
    input_dir, output_dir = absolute(input_dir), absolute(output_dir)
    planned = _plan_remove_dir(input_dir, output_dir, request, follow_symlinks, overwrite)
    if not planned and not watch:
        raise JobError(f"no images found in {input_dir}")
    todo = [p for p in planned if not p.skip_reason]
    check_broker(settings)
    # A worker killed mid-write (lost host) leaves a hidden temporary beside an output
    # that this job will write again; no chunk of this job runs yet, so clear them now.
    remove_stale_temporaries(p.output for p in todo)
    params = {
        "input_dir": str(input_dir),
        "output_dir": str(output_dir),
        **request.to_params(),
        # Which model: the path resolved, named by its registered id or sha256.
        "model": choose_checkpoint(request.checkpoint, settings).to_params(),
        "chunk_size": chunk_size,
        "overwrite": overwrite,
        "follow_symlinks": follow_symlinks,
    }
    if watch:
        params["watch"] = new_watch(settings)
    with db_session(settings) as session:
        job = Job(
            kind="remove_dir",
            state="queued",
            progress_total=len(todo),
            # Who records it: if that process dies midway, the job is failed, not left open.
            params=params | {RECORDING: worker_identity()},
        )
        session.add(job)
        session.flush()
        job_id = job.id
    try:
        _record_items(job_id, planned, chunk_size, settings)
    except BaseException:
        _forget_job(job_id, settings)
        raise
    return job_id


def _forget_job(job_id: str, settings: Settings) -> None:
    """Delete a job whose items could not all be recorded (nothing of it was queued),
    so that running the same command again starts afresh; best effort, as the database
    may be what failed."""
    try:
        with db_session(settings) as session:
            session.execute(delete(Job).where(Job.id == job_id))
    except Exception:  # noqa: BLE001 - the first error is the one to report
        log.warning("job %s: could not delete its partial record", job_id, exc_info=True)


def _removal_request(
    checkpoint: str,
    output: OutputOptions | None,
    run: RunOptions | None,
    run_fields: dict[str, Any],
    settings: Settings,
) -> RemovalRequest:
    """The request a remove-dir job records: the checkpoint resolved, the background
    image's path made absolute (the workers read it), the run options checked."""
    # Option checks and folder planning are shared with `unetbg remove` and the web page.
    from unetbg.removal import OutputOptions, RemovalRequest, RunOptions

    if run is not None and run_fields:
        raise TypeError("pass either run or its fields as keywords, not both")
    checkpoint_path = resolve_checkpoint(checkpoint, settings)
    try:
        run = run or RunOptions(**run_fields)
        _check_backend_here(run.backend, settings)
        output = output or OutputOptions()
        if output.background is not None:
            output = replace(output, background=str(absolute(output.background)))
    except ValueError as exc:
        raise JobError(str(exc)) from None
    return RemovalRequest(checkpoint_path, output, run)


def _check_backend_here(backend: str, settings: Settings) -> None:
    """Without a broker this process runs the job: refuse a backend whose package is not
    installed here now, rather than load the model and fail every image. (With a broker
    the workers' installation decides; a worker without it fails the job once.)"""
    # The optional backends are named after their packages (unetbg.backends.BACKENDS),
    # looked up without importing torch.
    if (
        settings.embedded
        and backend not in ("torch", "auto")  # auto falls back to what is installed
        and importlib.util.find_spec(backend) is None
    ):
        raise JobError(
            f"backend {backend!r} needs the {backend} package: pip install 'unetbg[{backend}]' "
            "(no broker: this process would run the job)"
        )


def _plan_remove_dir(
    input_dir: Path,
    output_dir: Path,
    request: RemovalRequest,
    follow_symlinks: bool,
    overwrite: bool,
) -> list[PlannedItem]:
    from unetbg.removal import plan_folder

    try:
        return plan_folder(
            input_dir,
            output_dir,
            output_format=request.output.format,
            follow_symlinks=follow_symlinks,
            overwrite=overwrite,
        )
    except (ValueError, OSError) as exc:
        raise JobError(str(exc)) from None


def _record_items(
    job_id: str, planned: list[PlannedItem], chunk_size: int, settings: Settings
) -> None:
    """One row per planned image: ``skipped`` with its reason, else ``pending`` in chunk
    ``index // chunk_size`` of the images to do; plain rows (an ORM object each cost
    1.4 GB at 100,000 images), :data:`RECORD_BATCH` to a transaction, the job's counters
    moved in the same one. An output that exists is counted, not recorded (a re-run of
    a folder 90 % done wrote a row for each). The last transaction clears the job's
    ``recording`` mark and settles it (final at once when nothing is to do)."""
    from unetbg.removal import SKIP_EXISTS

    index, now = 0, utcnow()
    for start in range(0, max(len(planned), 1), RECORD_BATCH):
        rows, existing = [], 0
        for plan in planned[start : start + RECORD_BATCH]:
            if plan.skip_reason == SKIP_EXISTS:
                existing += 1
                continue
            row = {
                "job_id": job_id,
                "source_path": str(plan.source),
                # Skipped entries (links, non-images) may have no output at all.
                "output_path": None if plan.output is None else str(plan.output),
                "state": "pending",
                "error": None,
                "chunk": None,
                "attempts": 0,
                "updated_at": now,
            }
            if plan.skip_reason:
                row["state"], row["error"] = "skipped", plan.skip_reason
            else:
                row["chunk"] = index // chunk_size
                index += 1
            rows.append(row)
        last = start + RECORD_BATCH >= len(planned)
        with db_session(settings) as session:
            lock_job(session, job_id)
            if rows:
                session.execute(insert(JobItem), rows)
            shift_counts(session, job_id, Counter(row["state"] for row in rows))
            if existing:
                session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(outputs_skipped=Job.outputs_skipped + existing),
                    execution_options={"synchronize_session": False},
                )
            if last:
                job = find_job(session, job_id, for_update=True)
                job.params = {k: v for k, v in job.params.items() if k != RECORDING}
                settle_remove_dir(session, job)


def absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute and resolved (``~`` expanded), as every path a job records
    must be: the workers that read it run in other folders, or on other machines."""
    return Path(path).expanduser().resolve()
