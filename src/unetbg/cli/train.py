"""``unetbg train``: run ``unetbg.training.fit`` in the foreground.

One ``--option`` per ``TrainConfig`` field (``cli/_train_options.py``, shared with
``submit-train``). Only options given on the command line override the preset (or, with
``--resume``, the run's saved config.json).
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import click

from unetbg.cli._train_options import data_option, field_options, field_overrides
from unetbg.training.config import PRESETS


def _setup_logging() -> None:
    logger = logging.getLogger("unetbg")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def default_run_dir() -> Path:
    """``<data_dir>/runs/YYYYMMDD_HHMMSS`` (with a suffix if that second is taken)."""
    from unetbg.settings import get_settings

    base = get_settings().runs_dir / datetime.now().strftime("%Y%m%d_%H%M%S")
    candidate, n = base, 1
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}_{n}"), n + 1
    return candidate


class _WeightsUnavailable(click.ClickException):
    """The ImageNet encoder weights could not be downloaded: exit status 2, like a usage
    error, since another --encoder-weights is the fix."""

    exit_code = 2


def _forget_failed_start(run_dir: Path, existed: set[str] | None) -> None:
    """Remove what a fresh run that failed before its first checkpoint left in
    ``run_dir`` (its train.log, config.json; the folder itself if it was created)."""
    if any((run_dir / name).exists() for name in ("best_model.pth", "last_model.pth")):
        return
    if existed is None:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for name in ("train.log", "config.json"):
        if name not in existed:
            (run_dir / name).unlink(missing_ok=True)


def _record(cfg, run_dir: Path) -> str | None:
    """Record this foreground run as a training job (``None``, with a warning, when the
    job database cannot be used: the run goes on unrecorded)."""
    from unetbg.cli._service import RequestError
    from unetbg.jobs import JobError, record_train_run

    try:
        return record_train_run(cfg, run_dir)
    except JobError as exc:  # e.g. its job is running elsewhere: never train beside it
        raise RequestError(str(exc)) from None
    except Exception as exc:
        logging.getLogger("unetbg").warning(
            "this run is not recorded as a job and its checkpoints are not registered "
            "(%s: %s); pass the file with --checkpoint PATH",
            type(exc).__name__,
            exc,
        )
        return None


class _TaskThread(threading.Thread):
    """Runs the training job's Celery task here (:func:`unetbg.jobs.dispatch.run_task_here`,
    as embedded mode does, whatever the broker), so a foreground run makes the records a
    worker's run makes."""

    def __init__(self, job_id: str) -> None:
        super().__init__(name=f"job-{job_id}", daemon=True)
        self.job_id, self.result = job_id, None
        #: Set when run() returns. Waited on instead of join(): an interrupt landing in
        #: join() can leave the thread marked as ended while it still runs (CPython).
        self.ended = threading.Event()

    def run(self) -> None:
        from unetbg.jobs.dispatch import run_task_here
        from unetbg.workers.app import TRAIN_TASK

        try:
            self.result = run_task_here(TRAIN_TASK, [self.job_id], f"{self.job_id}-train")
        finally:
            self.ended.set()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _run(cfg, run_dir: Path, job_id: str | None, fresh: bool) -> SimpleNamespace:
    """Train, as the job ``job_id`` when there is one; Ctrl-C or SIGTERM cancels
    (cooperatively: the run keeps its position in last_model.pth). Returns the run's
    summary."""
    # SIGTERM is what `kill`, schedulers and service managers send, and a run started in
    # the background with `&` ignores SIGINT: both must stop it as cleanly as Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _train(cfg, run_dir, job_id, fresh)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train(cfg, run_dir: Path, job_id: str | None, fresh: bool) -> SimpleNamespace:
    if job_id is None:
        from unetbg.training.fit import fit

        result = fit(cfg, run_dir, resume=not fresh)
        return SimpleNamespace(**{k: getattr(result, k) for k in _SUMMARY})
    from unetbg import jobs
    from unetbg.tasks.base import JobOutcome

    runner = _TaskThread(job_id)
    runner.start()
    while not runner.ended.is_set():
        try:
            runner.ended.wait(0.5)
        except KeyboardInterrupt:
            click.echo(f"\ncancelling job {job_id} at its next step …", err=True)
            jobs.cancel_job(job_id)
    runner.join()
    outcome = runner.result
    if outcome is None:  # the thread ended before the task could run
        raise click.ClickException(f"job {job_id}: the training task did not run")
    if outcome.failed() and not isinstance(outcome.result, JobOutcome):
        raise outcome.result
    summary = jobs.get_job(job_id).result or {}
    return SimpleNamespace(**{k: summary.get(k) for k in _SUMMARY})


#: What a run's summary holds (``train_job``'s result, ``FitResult``'s fields).
_SUMMARY = (
    "status",
    "epochs_completed",
    "best_epoch",
    "best_metrics",
    "best_checkpoint",
    "evaluation",
    "seconds",
)


@click.command(
    epilog="\b\nExit status: 0 the run ended (finished, or stopped early), 1 it failed or "
    "was cancelled (Ctrl-C, SIGTERM), "
    "2 usage error (bad option, missing or unusable folder, a device this machine "
    "lacks, encoder weights unavailable): nothing is trained then."
)
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default=None,
    help="Named configuration (default: balanced).",
)
@click.option(
    "--coco-root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="COCO 2017 folder (annotations/, train2017/, val2017/).",
)
@data_option
@click.option(
    "--device", default=None, help="auto, cpu, cuda or cuda:N (cuda without a GPU fails)."
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Continue the run in this folder from its last_model.pth.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run folder (default: <data dir>/runs/YYYYMMDD_HHMMSS); not one holding a "
    "model already (continue that with --resume).",
)
@field_options
def train(preset, coco_root, data, device, resume_dir, output_dir, **fields) -> None:
    """Train the model in the foreground; prints the run folder and the final figures.

    Values come from the preset (default: balanced), then from the options given here.
    The run is recorded as a training job (`unetbg jobs`, `unetbg status JOB`, the web
    page's curves) and its checkpoints are registered with it, as a submitted run's;
    it runs in this process whatever the broker. Ctrl-C (or SIGTERM) stops it at its
    next step, keeping its position for --resume.
    """
    cfg, run_dir = _config(preset, coco_root, data, device, resume_dir, output_dir, fields)
    from unetbg.data import CocoError
    from unetbg.model import CheckpointError, EncoderWeightsError

    _setup_logging()
    click.echo(f"run folder: {run_dir}")
    fresh = resume_dir is None
    existed = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else None
    job_id = _record(cfg, run_dir)
    try:
        result = _run(cfg, run_dir, job_id, fresh)
    except (CocoError, EncoderWeightsError, CheckpointError) as exc:
        if fresh:
            _forget_failed_start(run_dir, existed)
            if job_id is not None:  # nothing ran: as if never started
                from unetbg.jobs import forget_train_run

                forget_train_run(job_id)
        raise _start_error(exc, cfg) from exc
    _report(result, cfg, run_dir, job_id)


def _config(preset, coco_root, data, device, resume_dir, output_dir, fields):
    """The run's config and folder: the preset (or the resumed run's config) with the
    options given; any mistake is a usage error, before anything is recorded."""
    from unetbg.training.config import TrainConfig, resolve_config

    overrides = field_overrides(fields)
    if coco_root is not None:
        overrides["coco_root"] = str(coco_root)
    if data:
        overrides["data"] = tuple(data)
    if device is not None:
        overrides["device"] = device
    try:
        if resume_dir is not None:
            if preset is not None or output_dir is not None:
                raise ValueError("--resume continues a run folder: drop --preset/--output-dir")
            config_path = resume_dir / "config.json"
            if not config_path.is_file():
                raise ValueError(f"{config_path} not found: not a run folder")
            saved = json.loads(config_path.read_text())
            cfg = TrainConfig.from_dict(saved | overrides)
            run_dir = resume_dir
        else:
            cfg = resolve_config(preset or "balanced", **overrides)
            run_dir = output_dir or default_run_dir()
            from unetbg.training.fit import check_fresh_run_dir

            check_fresh_run_dir(run_dir)
        if cfg.coco_root is None and not cfg.data:
            raise ValueError("--coco-root is required, or training sources with --data")
        cfg = cfg.with_absolute_paths()
        from unetbg.model import resolve_device

        resolve_device(cfg.device)  # fails now, clearly, for --device cuda without a GPU
    except (ValueError, RuntimeError) as exc:
        raise click.UsageError(str(exc)) from exc
    return cfg, run_dir


def _start_error(exc: Exception, cfg) -> click.ClickException:
    """What a run that could not start says: a COCO folder that is not one, ImageNet
    weights that cannot be downloaded, or the checkpoint's own reason."""
    from unetbg.data import CocoError
    from unetbg.model import EncoderWeightsError

    if isinstance(exc, CocoError):  # not a usable COCO folder: fails before any step
        return click.BadParameter(str(exc), param_hint="'--coco-root'")
    if isinstance(exc, EncoderWeightsError) and cfg.encoder_weights == "imagenet":
        cause = exc.__cause__ or exc
        return _WeightsUnavailable(
            "ImageNet encoder weights: download failed (offline?): pass "
            "--encoder-weights /path/resnet34.pth (a torchvision ResNet34 state_dict) "
            f"or --encoder-weights none ({type(cause).__name__}: {cause})"
        )
    return click.ClickException(str(exc))


def _report(result, cfg, run_dir: Path, job_id: str | None) -> None:
    """The run's outcome and figures; exit status 1 when it was cancelled."""
    click.echo(
        f"status: {result.status} after {result.epochs_completed} epoch(s), {result.seconds:.1f}s"
    )
    if result.best_epoch is not None:
        m = result.best_metrics
        click.echo(
            f"best epoch {result.best_epoch}: val IoU {m['iou']:.4f}  Dice {m['dice']:.4f}  "
            f"pixel accuracy {m['pixel_accuracy']:.4f} (letterboxed {cfg.image_size}px)"
        )
    if result.evaluation is not None:
        e, b = result.evaluation, result.evaluation["baseline"]
        click.echo(
            f"original resolution, {e['images']} {cfg.val_split} images: IoU {e['iou']:.4f}  "
            f"Dice {e['dice']:.4f}  pixel accuracy {e['pixel_accuracy']:.4f}  "
            f"(all-foreground: IoU {b['iou']:.4f}  Dice {b['dice']:.4f}  "
            f"pixel accuracy {b['pixel_accuracy']:.4f})"
        )
    # A run cancelled before its first validation has none: say so, not "None".
    click.echo(f"best checkpoint: {result.best_checkpoint or 'none yet (no epoch was validated)'}")
    if job_id is not None:
        click.echo(f"job: {job_id} (`unetbg status {job_id}`)")
    if result.status == "cancelled":
        click.echo(f"continue it with `unetbg train --resume {run_dir}`", err=True)
        sys.exit(1)
