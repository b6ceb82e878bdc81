"""The training run: ``fit(cfg, run_dir)``.

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

import json
import logging
import math
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetbg.images import write_atomic
from unetbg.model import (
    CompositeLoss,
    ModelConfig,
    Preprocessing,
    build_checkpoint,
    create_model,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
)
from unetbg.training.config import TrainConfig
from unetbg.training.ema import ModelEma
from unetbg.training.engine import RunningMetrics, evaluate, train_one_epoch
from unetbg.training.evaluation import evaluate_checkpoint
from unetbg.training.history import plot_history, write_history
from unetbg.training.loaders import build_data
from unetbg.training.progress import StepProgress

log = logging.getLogger(__name__)

BEST, LAST = "best_model.pth", "last_model.pth"

OnEpochEnd = Callable[[int, dict[str, float], dict[str, float], float], None]
OnCheckpoint = Callable[[Path, int, dict[str, float], bool], None]


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


@dataclass
class _Progress:
    """Run position and early-stopping state, saved in ``last_model.pth``."""

    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished inside epoch ``epoch + 1``
    best_iou: float = -1.0
    best_epoch: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    stale_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    running: dict[str, Any] | None = None  # RunningMetrics of the unfinished epoch


def model_config_of(cfg: TrainConfig) -> ModelConfig:
    return ModelConfig(
        encoder=cfg.encoder,
        encoder_weights=cfg.encoder_weights,
        attention=cfg.attention,
        reconstruction=cfg.reconstruction,
    )


def lr_lambda(total_steps: int, warmup_fraction: float, min_lr_ratio: float):
    """Linear warm-up then cosine decay to ``min_lr_ratio``, as a factor of the base lr."""
    warmup = round(total_steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy and python RNG states in a form ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "python": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
) -> FitResult:
    """Train ``cfg`` into ``run_dir``; see the module doc for the files written.

    Validates every epoch, keeps ``best_model.pth`` by val IoU, stops early after
    ``cfg.patience`` epochs without gain, and at the end scores the best checkpoint at the
    original resolution (``evaluation``). ``should_stop()`` is asked between steps: when it
    returns True the position is saved in ``last_model.pth`` and the result is ``cancelled``;
    ``resume=True`` then continues from there as if never interrupted. Without
    ``resume`` a ``run_dir`` that already holds a model is refused (``ValueError``).
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    if not resume:
        check_fresh_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    cfg = cfg.with_absolute_paths().for_device(device.type)
    with _log_to(run_dir / "train.log"):
        return _fit(cfg, run_dir, device, on_epoch_end, on_checkpoint, should_stop, resume, started)


def _fit(
    cfg, run_dir, device, on_epoch_end, on_checkpoint, should_stop, resume, started
) -> FitResult:
    last_path, best_path = run_dir / LAST, run_dir / BEST
    resuming = resume and last_path.is_file()
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)

    data = build_data(cfg)
    model_config = model_config_of(cfg)
    preprocessing = Preprocessing(image_size=cfg.image_size)
    # Pretrained encoder weights matter only for a fresh model; a resume loads all weights.
    model = create_model(replace(model_config, encoder_weights=None) if resuming else model_config)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    # Evaluated and kept as best: the weight average when there is one.
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    eval_model = ema.module if ema is not None else model
    criterion = CompositeLoss(cfg.bce_weight, cfg.dice_weight, cfg.recon_weight)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    full_batches = (
        data.train_images // cfg.batch_size
        if data.train_loader.drop_last
        else math.ceil(data.train_images / cfg.batch_size)
    )
    steps_per_epoch = min(full_batches, cfg.max_steps_per_epoch or full_batches)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(steps_per_epoch * cfg.epochs, cfg.warmup_fraction, cfg.min_lr_ratio)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp)

    _write_config(cfg, run_dir, resuming)  # once data and model are known to build
    progress = _Progress()
    if resuming:
        progress = _restore(last_path, model, optimizer, scheduler, scaler, ema)
        log.info("resumed %s at epoch %d step %d", run_dir, progress.epoch + 1, progress.step)
    log.info(
        "training on %s: %d train images (%d steps/epoch), %d val images, %d epochs, "
        "batch %d, lr %g, size %d, amp %s",
        device,
        data.train_images,
        steps_per_epoch,
        data.val_images,
        cfg.epochs,
        cfg.batch_size,
        cfg.lr,
        cfg.image_size,
        cfg.amp,
    )

    def checkpoint(path: Path, epoch: int, metrics: dict, train_state: dict | None, is_best: bool):
        # best_model.pth holds what was scored; last_model.pth the raw weights to go on from.
        weights = eval_model if is_best else model
        state = build_checkpoint(
            weights, model_config, preprocessing, epoch, metrics, train_state=train_state
        )
        save_checkpoint(path, state)
        if on_checkpoint is not None:
            on_checkpoint(path, epoch, metrics, is_best)

    def save_last(metrics: dict) -> None:
        train_state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(),
            "progress": asdict(progress),
            "config": cfg.to_dict(),
        }
        if ema is not None:
            train_state["ema"] = ema.state_dict()
        checkpoint(last_path, progress.epoch, metrics, train_state, is_best=False)

    status = "completed"
    while progress.epoch < cfg.epochs:
        epoch = progress.epoch + 1
        epoch_started = time.perf_counter()
        data.set_epoch(epoch, skip_batches=progress.step)
        running = (
            RunningMetrics.from_state_dict(progress.running)
            if progress.running
            else RunningMetrics(cfg.threshold)
        )
        with StepProgress(epoch, cfg.epochs, steps_per_epoch, progress.step, log) as bar:
            outcome = train_one_epoch(
                model,
                data.train_loader,
                criterion,
                optimizer,
                scheduler,
                scaler,
                device,
                total_steps=steps_per_epoch,
                start_step=progress.step,
                running=running,
                amp=cfg.amp,
                channels_last=cfg.channels_last,
                grad_clip=cfg.grad_clip,
                threshold=cfg.threshold,
                should_stop=should_stop,
                progress=bar,
                ema=ema,
            )
        progress.step, progress.running = outcome.steps_done, outcome.running.state_dict()
        val = None
        if not outcome.cancelled:
            val = evaluate(
                eval_model,
                data.val_loader,
                criterion,
                device,
                amp=cfg.amp,
                channels_last=cfg.channels_last,
                threshold=cfg.threshold,
                should_stop=should_stop,
                sources=data.val_sources or None,
            )
        if val is None:  # cancelled while training or validating: keep the exact position
            save_last(progress.best_metrics)
            log.info("cancelled in epoch %d at step %d/%d", epoch, progress.step, steps_per_epoch)
            status = "cancelled"
            break

        train = outcome.running.compute()
        lr = optimizer.param_groups[0]["lr"]
        record = {
            "epoch": epoch,
            "lr": lr,
            "seconds": round(time.perf_counter() - epoch_started, 3),
        }
        record |= {f"train_{k}": v for k, v in train.items()}
        record |= {f"val_{k}": v for k, v in val.items()}
        score = val.get("mean_iou", val["iou"])
        improved = score > progress.best_iou + cfg.min_delta
        progress.epoch, progress.step, progress.running = epoch, 0, None
        progress.history.append(record)
        progress.stale_epochs = 0 if improved else progress.stale_epochs + 1
        if improved:
            progress.best_iou, progress.best_epoch, progress.best_metrics = score, epoch, val
            checkpoint(best_path, epoch, val, None, is_best=True)
        save_last(val)
        write_history(progress.history, run_dir)
        plot_history(progress.history, run_dir / "training_history.png")
        log.info(
            "epoch %d/%d  %.1fs  lr %.3g  train loss %.4f iou %.4f | val loss %.4f iou %.4f "
            "dice %.4f acc %.4f%s%s",
            epoch,
            cfg.epochs,
            record["seconds"],
            lr,
            train["loss"],
            train["iou"],
            val["loss"],
            val["iou"],
            val["dice"],
            val["pixel_accuracy"],
            "".join(
                f" | {n} iou {val[n + '_iou']:.4f}" for n in data.val_sources if n + "_iou" in val
            ),
            "  (best)" if improved else "",
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, train, val, lr)
        if cfg.patience is not None and progress.stale_epochs >= cfg.patience:
            log.info("early stop: no val IoU gain for %d epochs", progress.stale_epochs)
            status = "early_stopped"
            break

    evaluation = None
    if status != "cancelled" and cfg.final_evaluation and best_path.is_file():
        evaluation = evaluate_checkpoint(
            best_path,
            cfg.coco_root,
            cfg.val_split,
            device=str(device),
            threshold=cfg.threshold,
            limit=cfg.val_limit,
            batch_size=cfg.batch_size,
            data=cfg.data,
            val_percent=cfg.val_percent,
        )
        write_atomic(run_dir / "evaluation.json", json.dumps(evaluation, indent=2).encode())
        log.info(
            "best epoch %s at original resolution on %d %s images: iou %.4f dice %.4f acc %.4f "
            "(all-foreground baseline iou %.4f)",
            progress.best_epoch,
            evaluation["images"],
            cfg.val_split,
            evaluation["iou"],
            evaluation["dice"],
            evaluation["pixel_accuracy"],
            evaluation["baseline"]["iou"],
        )
    return FitResult(
        run_dir=run_dir,
        status=status,
        epochs_completed=progress.epoch,
        best_epoch=progress.best_epoch,
        best_metrics=progress.best_metrics,
        best_checkpoint=best_path if best_path.is_file() else None,
        last_checkpoint=last_path if last_path.is_file() else None,
        evaluation=evaluation,
        history=progress.history,
        seconds=round(time.perf_counter() - started, 3),
    )


def _write_config(cfg: TrainConfig, run_dir: Path, resuming: bool) -> None:
    path = run_dir / "config.json"
    if resuming and path.is_file():
        before = json.loads(path.read_text())
        changed = {k: (before.get(k), v) for k, v in cfg.to_dict().items() if before.get(k) != v}
        if changed:
            log.warning("resuming with changed config: %s", changed)
    write_atomic(path, json.dumps(cfg.to_dict(), indent=2).encode())


def _restore(path, model, optimizer, scheduler, scaler, ema: ModelEma | None) -> _Progress:
    # RNG states must stay CPU tensors; the optimizer moves its own state to the params.
    ckpt = load_checkpoint(path, map_location="cpu")
    state = ckpt.get("train_state")
    if not state:
        raise ValueError(f"{path} holds no training state (optimizer, position): cannot resume")
    model.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    if ema is not None:
        if "ema" not in state:
            raise ValueError(f"{path} holds no weight average: resume it without ema_decay")
        ema.load_state_dict(state["ema"])
    return _Progress(**state["progress"])
