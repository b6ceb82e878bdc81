"""One training run: the objects it holds and the named steps ``fit`` takes.

:class:`TrainingRun` builds data, model, optimizer, schedule and (optionally) the weight
average once, restores them from ``last_model.pth`` on resume, and offers the steps of an
epoch — :meth:`~TrainingRun.train_epoch`, :meth:`~TrainingRun.validate`,
:meth:`~TrainingRun.end_epoch` or :meth:`~TrainingRun.cancel` — and the closing
:meth:`~TrainingRun.final_evaluation`. :class:`RunState` is what makes a resume exact:
where the run is (epoch, step, the unfinished epoch's running figures) and what it has
seen (history, best epoch, epochs without gain).
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetbg.images import write_atomic
from unetbg.model import (
    CheckpointError,
    CompositeLoss,
    ModelConfig,
    Preprocessing,
    build_checkpoint,
    create_model,
    load_checkpoint,
    save_checkpoint,
)
from unetbg.training.config import TrainConfig
from unetbg.training.distill import Distiller
from unetbg.training.ema import ModelEma
from unetbg.training.engine import (
    EpochOutcome,
    RunningMetrics,
    amp_dtype,
    evaluate,
    train_one_epoch,
)
from unetbg.training.evaluation import evaluate_checkpoint
from unetbg.training.history import plot_history, write_history
from unetbg.training.loaders import build_data
from unetbg.training.progress import StepProgress

log = logging.getLogger(__name__)

BEST, LAST = "best_model.pth", "last_model.pth"

OnEpochEnd = Callable[[int, dict[str, float], dict[str, float], float], None]
OnCheckpoint = Callable[[Path, int, dict[str, float], bool], None]
#: ``on_step(epoch, step, steps_per_epoch, running_figures)`` after every training step.
OnStep = Callable[[int, int, int, dict[str, float]], None]


@dataclass
class RunState:
    """Run position and early-stopping state, saved in ``last_model.pth`` (as ``progress``)."""

    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished inside epoch ``epoch + 1``
    best_iou: float = -1.0
    best_epoch: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    stale_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    running: dict[str, Any] | None = None  # RunningMetrics of the unfinished epoch


@dataclass
class Hooks:
    """What the caller hears and decides: epoch figures, checkpoints, cancellation."""

    on_epoch_end: OnEpochEnd | None = None
    on_checkpoint: OnCheckpoint | None = None
    should_stop: Callable[[], bool] | None = None
    on_step: OnStep | None = None


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


class TrainingRun:
    """Everything one run holds while it trains, built (or restored) once."""

    def __init__(
        self, cfg: TrainConfig, run_dir: Path, device: torch.device, hooks: Hooks, resume: bool
    ) -> None:
        self.cfg, self.run_dir, self.device, self.hooks = cfg, run_dir, device, hooks
        self.last_path, self.best_path = run_dir / LAST, run_dir / BEST
        resuming = resume and self.last_path.is_file()
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)

        self.data = build_data(cfg)
        self.model_config = model_config_of(cfg)
        self.preprocessing = Preprocessing(image_size=cfg.image_size)
        # Pretrained encoder weights matter only for a fresh model; a resume loads them all.
        self.model = create_model(
            replace(self.model_config, encoder_weights=None) if resuming else self.model_config
        )
        if cfg.init_weights and not resuming:
            self.model.load_state_dict(self._weights(cfg.init_weights, "init_weights"))
            log.info("weights initialised from %s", cfg.init_weights)
        self.model.to(device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # Evaluated and kept as best: the weight average when there is one.
        self.ema = ModelEma(self.model, cfg.ema_decay) if cfg.ema_decay is not None else None
        self.eval_model = self.ema.module if self.ema is not None else self.model
        self.criterion = CompositeLoss(cfg.bce_weight, cfg.dice_weight, cfg.recon_weight)
        self.distill = self._teacher() if cfg.distill_from else None
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        loader = self.data.train_loader
        full_batches = (
            self.data.train_images // cfg.batch_size
            if loader.drop_last
            else math.ceil(self.data.train_images / cfg.batch_size)
        )
        self.steps_per_epoch = min(full_batches, cfg.max_steps_per_epoch or full_batches)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_lambda(self.steps_per_epoch * cfg.epochs, cfg.warmup_fraction, cfg.min_lr_ratio),
        )
        # Loss scaling guards float16's narrow range; bfloat16 (the CPU's) needs none.
        self.scaler = torch.amp.GradScaler(
            device.type, enabled=bool(cfg.amp) and amp_dtype(device) == torch.float16
        )

        self._write_config(resuming)  # once data and model are known to build
        self.state = RunState()
        if resuming:
            self.state = self._restore()
            log.info(
                "resumed %s at epoch %d step %d", run_dir, self.state.epoch + 1, self.state.step
            )
        log.info(
            "training on %s: %d train images (%d steps/epoch), %d val images, %d epochs, "
            "batch %d, lr %g, size %d, amp %s",
            device,
            self.data.train_images,
            self.steps_per_epoch,
            self.data.val_images,
            cfg.epochs,
            cfg.batch_size,
            cfg.lr,
            cfg.image_size,
            cfg.amp,
        )

    # ------------------------------------------------------------------ the steps

    def train_epoch(self, epoch: int) -> EpochOutcome:
        """Train epoch ``epoch`` from the saved step on (all of it on a fresh epoch)."""
        cfg, state = self.cfg, self.state
        self.data.set_epoch(epoch, skip_batches=state.step)
        running = (
            RunningMetrics.from_state_dict(state.running)
            if state.running
            else RunningMetrics(cfg.threshold)
        )
        with StepProgress(epoch, cfg.epochs, self.steps_per_epoch, state.step, log) as bar:
            progress = bar
            if self.hooks.on_step is not None:
                on_step = self.hooks.on_step

                def progress(step: int, total: int, figures: dict[str, float]) -> None:
                    bar(step, total, figures)
                    on_step(epoch, step, total, figures)

            outcome = train_one_epoch(
                self.model,
                self.data.train_loader,
                self.criterion,
                self.optimizer,
                self.scheduler,
                self.scaler,
                self.device,
                total_steps=self.steps_per_epoch,
                start_step=state.step,
                running=running,
                amp=cfg.amp,
                channels_last=cfg.channels_last,
                grad_clip=cfg.grad_clip,
                threshold=cfg.threshold,
                should_stop=self.hooks.should_stop,
                progress=progress,
                ema=self.ema,
                distill=self.distill,
            )
        state.step, state.running = outcome.steps_done, outcome.running.state_dict()
        return outcome

    def validate(self) -> dict[str, float] | None:
        """Validation figures of the evaluated weights; ``None`` when cancelled meanwhile."""
        return evaluate(
            self.eval_model,
            self.data.val_loader,
            self.criterion,
            self.device,
            amp=self.cfg.amp,
            channels_last=self.cfg.channels_last,
            threshold=self.cfg.threshold,
            should_stop=self.hooks.should_stop,
            sources=self.data.val_sources or None,
        )

    def cancel(self, epoch: int) -> None:
        """Keep the exact position in ``last_model.pth``, so a resume goes on from it."""
        self._save_last(self.state.best_metrics)
        log.info(
            "cancelled in epoch %d at step %d/%d", epoch, self.state.step, self.steps_per_epoch
        )

    def end_epoch(
        self, epoch: int, outcome: EpochOutcome, val: dict[str, float], seconds: float
    ) -> bool:
        """Record the finished epoch, keep the best weights; True when it is time to stop."""
        cfg, state = self.cfg, self.state
        train = outcome.running.compute()
        lr = self.optimizer.param_groups[0]["lr"]
        record = {"epoch": epoch, "lr": lr, "seconds": round(seconds, 3)}
        record |= {f"train_{k}": v for k, v in train.items()}
        record |= {f"val_{k}": v for k, v in val.items()}
        # A mixed run chooses on the mean of its sources' IoUs (see engine.evaluate).
        score = val.get("mean_iou", val["iou"])
        improved = score > state.best_iou + cfg.min_delta
        state.epoch, state.step, state.running = epoch, 0, None
        state.history.append(record)
        state.stale_epochs = 0 if improved else state.stale_epochs + 1
        if improved:
            state.best_iou, state.best_epoch, state.best_metrics = score, epoch, val
            self._checkpoint(self.best_path, epoch, val, None, is_best=True)
        self._save_last(val)
        write_history(state.history, self.run_dir)
        plot_history(state.history, self.run_dir / "training_history.png")
        self._log_epoch(epoch, record, train, val, lr, improved)
        if self.hooks.on_epoch_end is not None:
            self.hooks.on_epoch_end(epoch, train, val, lr)
        if cfg.patience is not None and state.stale_epochs >= cfg.patience:
            log.info("early stop: no val IoU gain for %d epochs", state.stale_epochs)
            return True
        return False

    def final_evaluation(self) -> dict[str, Any] | None:
        """``best_model.pth`` scored at the original resolution into ``evaluation.json``."""
        cfg = self.cfg
        if not cfg.final_evaluation or not self.best_path.is_file():
            return None
        evaluation = evaluate_checkpoint(
            self.best_path,
            cfg.coco_root,
            cfg.val_split,
            device=str(self.device),
            threshold=cfg.threshold,
            limit=cfg.val_limit,
            batch_size=cfg.batch_size,
            data=cfg.data,
            val_percent=cfg.val_percent,
        )
        write_atomic(self.run_dir / "evaluation.json", json.dumps(evaluation, indent=2).encode())
        log.info(
            "best epoch %s at original resolution on %d %s images: iou %.4f dice %.4f acc %.4f "
            "(all-foreground baseline iou %.4f)",
            self.state.best_epoch,
            evaluation["images"],
            cfg.val_split,
            evaluation["iou"],
            evaluation["dice"],
            evaluation["pixel_accuracy"],
            evaluation["baseline"]["iou"],
        )
        return evaluation

    # ------------------------------------------------------------------ files

    def _checkpoint(
        self, path: Path, epoch: int, metrics: dict, train_state: dict | None, is_best: bool
    ) -> None:
        # best_model.pth holds what was scored; last_model.pth the raw weights to go on from.
        weights = self.eval_model if is_best else self.model
        state = build_checkpoint(
            weights, self.model_config, self.preprocessing, epoch, metrics, train_state=train_state
        )
        save_checkpoint(path, state)
        if self.hooks.on_checkpoint is not None:
            self.hooks.on_checkpoint(path, epoch, metrics, is_best)

    def _save_last(self, metrics: dict) -> None:
        train_state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "progress": asdict(self.state),
            "config": self.cfg.to_dict(),
        }
        if self.ema is not None:
            train_state["ema"] = self.ema.state_dict()
        self._checkpoint(self.last_path, self.state.epoch, metrics, train_state, is_best=False)

    def _write_config(self, resuming: bool) -> None:
        path = self.run_dir / "config.json"
        config = json.loads(json.dumps(self.cfg.to_dict()))  # as saved: tuples are lists
        if resuming and path.is_file():
            before = json.loads(path.read_text())
            changed = {k: (before.get(k), v) for k, v in config.items() if before.get(k) != v}
            if changed:
                log.warning("resuming with changed config: %s", changed)
        write_atomic(path, json.dumps(config, indent=2).encode())

    def _restore(self) -> RunState:
        # RNG states must stay CPU tensors; the optimizer moves its own state to the params.
        ckpt = load_checkpoint(self.last_path, map_location="cpu")
        state = ckpt.get("train_state")
        if not state:
            raise ValueError(
                f"{self.last_path} holds no training state (optimizer, position): cannot resume"
            )
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._apply_schedule_config()
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        if self.ema is not None:
            if "ema" not in state:
                raise ValueError(
                    f"{self.last_path} holds no weight average: resume it without ema_decay"
                )
            self.ema.load_state_dict(state["ema"])
        return RunState(**state["progress"])

    def _weights(self, spec: str, option: str) -> dict[str, torch.Tensor]:
        """The float32 weights of ``spec`` (``default`` or a checkpoint path), which must
        have this run's model config: the start of a fine-tune, or its teacher."""
        from unetbg.weights import DEFAULT_SPEC, default_checkpoint

        path = default_checkpoint() if spec == DEFAULT_SPEC else Path(spec)
        if path is None:
            raise CheckpointError(f"{option} 'default': no default model is installed")
        ckpt = load_checkpoint(path, map_location="cpu")
        mine = self.model_config.to_dict() | {"encoder_weights": None}
        theirs = dict(ckpt["model_config"]) | {"encoder_weights": None}
        if mine != theirs:
            raise CheckpointError(
                f"{path}: {option} has another model config ({theirs}) than this run ({mine})"
            )
        return {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}

    def _teacher(self) -> Distiller:
        """The frozen teacher of ``distill_from`` and the sources whose samples it teaches."""
        cfg = self.cfg
        teacher = create_model(replace(self.model_config, encoder_weights=None))
        teacher.load_state_dict(self._weights(cfg.distill_from, "distill_from"))
        log.info("distill_from: %s", cfg.distill_from)
        teacher.to(self.device)
        if cfg.channels_last:
            teacher.to(memory_format=torch.channels_last)
        names = self.data.train_sources
        sources = [names.index(n) for n in cfg.distill_sources] if cfg.distill_sources else None
        return Distiller(teacher, cfg.distill_weight, sources)

    def _apply_schedule_config(self) -> None:
        """Make the run's config win over the restored optimizer and scheduler state.

        Both carry the peak lr and weight decay they were saved with, so without this a
        resume with another ``--lr`` or ``--weight-decay`` would silently keep the old ones.
        The lr of the restored position is set at once (not after the next step), from the
        schedule of this config; for an unchanged config that is the saved value exactly.
        """
        self.scheduler.base_lrs = [self.cfg.lr] * len(self.optimizer.param_groups)
        step = self.scheduler.last_epoch
        for group, schedule in zip(
            self.optimizer.param_groups, self.scheduler.lr_lambdas, strict=True
        ):
            group["initial_lr"] = self.cfg.lr
            group["weight_decay"] = self.cfg.weight_decay
            group["lr"] = self.cfg.lr * schedule(step)

    def _log_epoch(self, epoch, record, train, val, lr, improved) -> None:
        sources = "".join(
            f" | {n} iou {val[n + '_iou']:.4f}" for n in self.data.val_sources if n + "_iou" in val
        )
        log.info(
            "epoch %d/%d  %.1fs  lr %.3g  train loss %.4f iou %.4f | val loss %.4f iou %.4f "
            "dice %.4f acc %.4f%s%s",
            epoch,
            self.cfg.epochs,
            record["seconds"],
            lr,
            train["loss"],
            train["iou"],
            val["loss"],
            val["iou"],
            val["dice"],
            val["pixel_accuracy"],
            sources,
            "  (best)" if improved else "",
        )
