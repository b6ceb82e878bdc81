"""Recording new jobs (validated now, so a mistake fails here and not in a worker); which
checkpoint a job is to use is :mod:`unetbg.jobs.checkpoints`' question.

Every ``create_*`` function records the job in one transaction and returns its id once
committed; :func:`unetbg.jobs.dispatch` starts it. A remove-dir job's items follow its
row as its folder is walked, in short batches, each committed at once and, with a
broker, its chunks queued at once (:mod:`unetbg.jobs.recording`, issue 23): workers
start within seconds on a million-file folder; the job says ``recording`` until the
last batch, so that settling never ends it early.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from unetbg.db.models import Job
from unetbg.jobs import recording
from unetbg.jobs.broker import check_broker
from unetbg.jobs.checkpoints import choose_checkpoint, resolve_checkpoint
from unetbg.jobs.errors import JobError
from unetbg.jobs.liveness import heartbeat_fresh, worker_identity
from unetbg.jobs.recording import record_items
from unetbg.jobs.records import RECORDING, SENT_WHILE_RECORDING, reopen_job
from unetbg.jobs.store import db_session, find_job
from unetbg.jobs.watched import new_watch
from unetbg.settings import Settings, get_settings

if TYPE_CHECKING:
    from unetbg.removal import OutputOptions, PlannedItem, RemovalRequest, RunOptions
    from unetbg.training.config import TrainConfig

log = logging.getLogger(__name__)


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
    """Walk ``input_dir`` and record the job with all its items (in batches, see the
    module doc; with a broker each batch's chunks are queued as it is committed);
    returns its id once the last batch committed.

    ``output``: what to write (default: soft cut-outs as PNG); ``run``: how the workers
    run the model (:class:`unetbg.removal.RunOptions`), or its fields as keywords
    (``batch_size=2``, ``device="cuda"``). Images whose output already exists are
    counted as skipped (unless ``overwrite``), so running the same command again
    processes only what is missing or failed before. Raises :class:`JobError` for a bad
    folder, option or checkpoint, before anything is recorded. ``watch``: this process
    goes on to watch the folder (:mod:`unetbg.jobs.watched`); the job is recorded
    watched, so it stays open after its first items, and a folder with no image yet is
    fine.
    """
    settings = settings or get_settings()
    # Asked for, a chunk size is kept; the default one grows with a large job.
    grow, chunk_size = chunk_size is None, chunk_size or settings.chunk_size
    if chunk_size < 1:
        raise JobError(f"chunk size must be >= 1, got {chunk_size}")
    request = _removal_request(checkpoint, output, run, run_fields, settings)
    from unetbg.removal.storage import job_location

    # Resolved once, here: the items' paths derive from these and cross to the workers,
    # whose working directory is not the submitter's (s3:// URLs are kept as URLs).
    try:
        input_dir, output_dir = job_location(input_dir), job_location(output_dir)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    batches = _plan_remove_dir(input_dir, output_dir, request, follow_symlinks, overwrite)
    first = next(batches, [])
    if not first and not watch:
        raise JobError(f"no images found in {input_dir}")
    check_broker(settings)
    params = {
        "input_dir": str(input_dir),
        "output_dir": str(output_dir),
        **request.to_params(),
        # Which model: the path resolved, named by its registered id or sha256.
        "model": choose_checkpoint(request.checkpoint, settings).to_params(),
        "chunk_size": chunk_size,
        "largest_chunk": recording.LARGEST_CHUNK if grow else chunk_size,
        "overwrite": overwrite,
        "follow_symlinks": follow_symlinks,
        # Who records it: if that process dies midway, the job is failed, not left open.
        RECORDING: worker_identity(),
    }
    if watch:
        params["watch"] = new_watch(settings)
    if not settings.embedded:
        params[SENT_WHILE_RECORDING] = True
    with db_session(settings) as session:
        job = Job(kind="remove_dir", state="queued", progress_total=0, params=params)
        session.add(job)
        session.flush()
        job_id = job.id
    record_items(job_id, chain([first], batches), chunk_size, settings, grow)
    return job_id


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
) -> Iterator[list[PlannedItem]]:
    """The folder's plan in batches of ``recording.RECORD_BATCH``, walked as they are
    taken; the folders are checked now. A problem is a :class:`JobError`, now or later."""
    from unetbg.removal.storage import in_batches, is_url, plan_job
    from unetbg.removal.streaming import plan_folder_in_batches

    try:
        if is_url(input_dir) or is_url(output_dir):
            # Object storage (unetbg.removal.storage): both prefixes listed whole (one
            # request per 1,000 keys), then recorded in the same batches.
            planned = plan_job(input_dir, output_dir, request.output.format, overwrite)
            batches = in_batches(planned, recording.RECORD_BATCH)
        else:
            batches = plan_folder_in_batches(
                input_dir,
                output_dir,
                output_format=request.output.format,
                follow_symlinks=follow_symlinks,
                overwrite=overwrite,
                batch=recording.RECORD_BATCH,
            )
    except (ValueError, OSError) as exc:
        raise JobError(str(exc)) from None
    try:
        yield from batches
    except (ValueError, OSError) as exc:
        raise JobError(str(exc)) from None


def absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute and resolved (``~`` expanded), as every path a job records
    must be: the workers that read it run in other folders, or on other machines."""
    return Path(path).expanduser().resolve()
