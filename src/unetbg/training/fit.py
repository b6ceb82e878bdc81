"""The training run: ``fit(cfg, run_dir)``, a short loop over the steps of
:class:`unetbg.training.run.TrainingRun`.

A run folder holds everything about one run::

    config.json            the fully resolved TrainConfig
    train.log              what happened, appended to on resume
    metrics.json / .csv    one record per finished epoch (train_* and val_* figures)
    training_history.png   loss, IoU, Dice, pixel accuracy curves
    best_model.pth         weights with the best val IoU (an inference checkpoint)
    last_model.pth         latest weights + optimizer, scheduler, AMP scaler, RNG states,
                           and the position inside the epoch: resume continues exactly
    evaluation.json        best_model.pth scored at the original image resolution

Every file is written atomically, so a killed run leaves the previous version intact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetbg.model import resolve_device
from unetbg.training.config import TrainConfig
from unetbg.training.run import (
    BEST,
    LAST,
    Hooks,
    OnCheckpoint,
    OnEpochEnd,
    OnStep,
    TrainingRun,
)

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """How a run ended. ``status`` is ``completed``, ``early_stopped`` or ``cancelled``."""

    run_dir: Path
    status: str
    epochs_completed: int
    best_epoch: int | None
    #: Validation figures (letterboxed) of the best epoch.
    best_metrics: dict[str, float]
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    #: ``evaluate_checkpoint`` on best_model.pth (original resolution), or ``None``.
    evaluation: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


@contextmanager
def _log_to(path: Path):
    """Copy this package's training log records into ``path`` for the duration."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("unetbg.training")
    previous = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()


def _native_bf16(device) -> bool:
    """Whether mixed precision pays on ``device`` when it is the CPU (see ``for_device``)."""
    from unetbg.training.engine import native_bf16

    return device.type == "cpu" and native_bf16()


def check_fresh_run_dir(run_dir: str | Path) -> None:
    """Raise ``ValueError`` if ``run_dir`` already holds a run's model (a new run would
    replace its ``best_model.pth``/``last_model.pth``)."""
    run_dir = Path(run_dir)
    held = [name for name in (BEST, LAST) if (run_dir / name).exists()]
    if held:
        raise ValueError(
            f"{run_dir} already holds a trained model ({', '.join(held)}); continue it "
            f"with `unetbg train --resume {run_dir}` (or fit(..., resume=True)), "
            "or choose a new run folder"
        )


def fit(
    cfg: TrainConfig,
    run_dir: str | Path,
    on_epoch_end: OnEpochEnd | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
    on_step: OnStep | None = None,
) -> FitResult:
    """Train ``cfg`` into ``run_dir``; see the module doc for the files written.

    Validates every epoch, keeps ``best_model.pth`` by val IoU, stops early after
    ``cfg.patience`` epochs without gain, and at the end scores the best checkpoint at the
    original resolution (``evaluation``). ``should_stop()`` is asked between steps: when it
    returns True the position is saved in ``last_model.pth`` and the result is ``cancelled``;
    ``resume=True`` then continues from there as if never interrupted. Without
    ``resume`` a ``run_dir`` that already holds a model is refused (``ValueError``).
    ``on_step(epoch, step, steps_per_epoch, running_figures)`` hears every training step
    (the caller bounds how often it records anything).
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    if not resume:
        check_fresh_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    cfg = cfg.with_absolute_paths().for_device(device.type, native_bf16=_native_bf16(device))
    with _log_to(run_dir / "train.log"):
        if cfg.amp and device.type == "cpu" and not _native_bf16(device):
            log.warning(
                "mixed precision (amp) on this CPU runs bfloat16 emulated, about 9x slower "
                "than float32: train with --no-amp --no-channels-last"
            )
        run = TrainingRun(
            cfg, run_dir, device, Hooks(on_epoch_end, on_checkpoint, should_stop, on_step), resume
        )
        status = _train(run)
        evaluation = run.final_evaluation() if status != "cancelled" else None
    state = run.state
    return FitResult(
        run_dir=run_dir,
        status=status,
        epochs_completed=state.epoch,
        best_epoch=state.best_epoch,
        best_metrics=state.best_metrics,
        best_checkpoint=run.best_path if run.best_path.is_file() else None,
        last_checkpoint=run.last_path if run.last_path.is_file() else None,
        evaluation=evaluation,
        history=state.history,
        seconds=round(time.perf_counter() - started, 3),
    )


def _train(run: TrainingRun) -> str:
    """Epochs until the last, an early stop or a cancel; how the run ended."""
    while run.state.epoch < run.cfg.epochs:
        epoch = run.state.epoch + 1
        started = time.perf_counter()
        outcome = run.train_epoch(epoch)
        val = None if outcome.cancelled else run.validate()
        if val is None:  # cancelled while training or validating
            run.cancel(epoch)
            return "cancelled"
        if run.end_epoch(epoch, outcome, val, time.perf_counter() - started):
            return "early_stopped"
    return "completed"
