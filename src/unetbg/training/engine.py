"""One training epoch and one validation pass.

Both functions take ready-made objects (model, loader, loss, optimizer, ...) and return plain
dicts of floats, so ``fit`` stays a readable run loop and the overfitting test can drive them
directly without checkpoints or files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unetbg.model.metrics import SegmentationMeter, confusion
from unetbg.training.distill import Distiller
from unetbg.training.ema import ModelEma
from unetbg.training.partial import unlabelled_people

#: ``progress(step, total_steps, running_metrics)`` after each optimisation step.
ProgressFn = Callable[[int, int, dict[str, float]], None]


def amp_dtype(device: torch.device) -> torch.dtype:
    """Mixed precision's type: float16 on CUDA (with a GradScaler), bfloat16 on the CPU,
    where it has float32's range (no scaler needed) and runs ~1.8x faster than float32 on
    CPUs with AVX512-BF16 or AMX (docs/model-card.md); elsewhere it is emulated, slowly."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 itself (AVX512-BF16 or AMX), as oneDNN reports.

    Without it bfloat16 is emulated: on an AVX2-only EPYC the cpu preset's first 20 steps
    took 840 s in bfloat16 against 92 s in float32, under the same load (2026-12-07).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


@dataclass
class RunningMetrics:
    """Loss means and micro IoU/Dice/pixel accuracy over the steps of one epoch so far.

    Kept as plain sums so that a cancelled epoch can be saved into the checkpoint
    (:meth:`state_dict`) and finished after a resume with the same figures.
    """

    threshold: float = 0.5
    batches: int = 0
    loss_sums: dict[str, float] = field(default_factory=dict)
    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0
    tn: float = 0.0

    def update(
        self, losses: dict[str, float], probs: torch.Tensor, target: torch.Tensor, ignore
    ) -> None:
        """Add one batch: its loss terms and its thresholded prediction counts."""
        self.batches += 1
        for name, value in losses.items():
            self.loss_sums[name] = self.loss_sums.get(name, 0.0) + float(value)
        tp, fp, fn, tn = confusion(probs >= self.threshold, target, ignore)
        self.tp += float(tp.sum())
        self.fp += float(fp.sum())
        self.fn += float(fn.sum())
        self.tn += float(tn.sum())

    def compute(self) -> dict[str, float]:
        """Mean of each loss term, plus ``iou``, ``dice`` and ``pixel_accuracy`` (micro)."""
        out = {name: total / max(self.batches, 1) for name, total in self.loss_sums.items()}
        union = self.tp + self.fp + self.fn
        # Same rules as unetbg.model.metrics: an empty union scores 1.
        out["iou"] = self.tp / union if union else 1.0
        out["dice"] = 2 * self.tp / (union + self.tp) if union else 1.0
        total = union + self.tn
        out["pixel_accuracy"] = (self.tp + self.tn) / total if total else 1.0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "batches": self.batches,
            "loss_sums": dict(self.loss_sums),
            "counts": [self.tp, self.fp, self.fn, self.tn],
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RunningMetrics:
        tp, fp, fn, tn = state["counts"]
        return cls(state["threshold"], state["batches"], dict(state["loss_sums"]), tp, fp, fn, tn)


@dataclass
class EpochOutcome:
    """What :func:`train_one_epoch` did: the step reached and whether it was cancelled."""

    steps_done: int
    cancelled: bool
    running: RunningMetrics


def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool):
    image = batch["image"].to(device, non_blocking=True)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    target = batch["mask"].to(device, non_blocking=True)
    ignore = batch["ignore"].to(device, non_blocking=True)
    raw = batch["raw"].to(device, non_blocking=True)
    return image, target, ignore, raw


def train_one_epoch(
    model: nn.Module,
    loader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    *,
    total_steps: int,
    start_step: int = 0,
    running: RunningMetrics | None = None,
    amp: bool = False,
    channels_last: bool = False,
    grad_clip: float | None = None,
    threshold: float = 0.5,
    should_stop: Callable[[], bool] | None = None,
    progress: ProgressFn | None = None,
    ema: ModelEma | None = None,
    distill: Distiller | None = None,
) -> EpochOutcome:
    """Train until step ``total_steps`` of this epoch, starting at ``start_step``.

    ``loader`` must already skip the batches of steps before ``start_step`` (the sampler does
    that on resume). The scheduler steps once per optimisation step. ``should_stop`` is asked
    before each step; when it says yes the epoch ends early with ``cancelled=True``.
    ``distill`` adds a teacher's term (``loss_distill``) on the samples it picks.
    """
    model.train()
    running = running if running is not None else RunningMetrics(threshold)
    step = start_step
    if step >= total_steps:  # resumed after the last step: nothing left to train
        return EpochOutcome(step, False, running)
    for batch in loader:
        if should_stop is not None and should_stop():
            return EpochOutcome(step, True, running)
        image, target, ignore, raw = _to_device(batch, device, channels_last)

        with torch.autocast(device.type, dtype=amp_dtype(device), enabled=amp):
            outputs = model(image)
        probs = torch.sigmoid(outputs["mask"].detach().float())
        loss_ignore = ignore
        partial = batch.get("partial")
        if partial is not None and bool(partial.any()):  # checked on the host: no sync
            loss_ignore = unlabelled_people(probs, target, ignore, partial, threshold)
        with torch.autocast(device.type, dtype=amp_dtype(device), enabled=amp):
            loss, parts = criterion(outputs, target, ignore=loss_ignore, image=raw)
        if distill is not None:  # the teacher's soft masks, on the samples it teaches
            with torch.autocast(device.type, dtype=amp_dtype(device), enabled=amp):
                parts["distill"] = distill.loss(batch, image, outputs["mask"], ignore)
            loss = loss + distill.weight * parts["distill"]
            parts["distill"] = parts["distill"].detach()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step + 1}; lower the lr")

        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update(model)

        with torch.no_grad():
            # Loss terms are prefixed so "loss_dice" never collides with the Dice metric.
            losses = {"loss": float(loss)} | {f"loss_{k}": float(v) for k, v in parts.items()}
            running.update(losses, probs, target, ignore)
        step += 1
        if progress is not None:
            progress(step, total_steps, running.compute())
        if step >= total_steps:
            break
    return EpochOutcome(step, False, running)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader,
    criterion: nn.Module,
    device: torch.device,
    *,
    amp: bool = False,
    channels_last: bool = False,
    threshold: float = 0.5,
    should_stop: Callable[[], bool] | None = None,
    sources: list[str] | None = None,
) -> dict[str, float] | None:
    """Validation loss, IoU, Dice and pixel accuracy (micro and macro) at the letterboxed size.

    Letterbox padding is marked ``ignore`` by the eval preset, so it counts for nothing.
    With ``sources`` (names, indexed by the samples' ``source`` tag) each source's figures
    are added as ``NAME_iou``, ``NAME_dice``, ... and ``mean_iou`` is their mean IoU: the
    figure a mixed run selects its best epoch on, so that a source of large, easy
    photos cannot hide a fall on small people in COCO scenes.
    Returns ``None`` when ``should_stop`` interrupts the pass.
    """
    model.eval()
    meter = SegmentationMeter(threshold=threshold)
    per_source = [SegmentationMeter(threshold=threshold) for _ in sources or ()]
    loss_sum, batches = 0.0, 0
    for batch in loader:
        if should_stop is not None and should_stop():
            return None
        image, target, ignore, raw = _to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype(device), enabled=amp):
            outputs = model(image)
            loss, _ = criterion(outputs, target, ignore=ignore, image=raw)
        loss_sum += float(loss)
        batches += 1
        probs = torch.sigmoid(outputs["mask"].float())
        meter.update(probs, target, ignore)
        for index, source_meter in enumerate(per_source):
            pick = batch["source"].to(device) == index
            if pick.any():
                source_meter.update(probs[pick], target[pick], ignore[pick])
    figures = {"loss": loss_sum / max(batches, 1), **meter.compute()}
    scored = [(n, m.compute()) for n, m in zip(sources or (), per_source, strict=True) if m.count]
    for name, values in scored:
        figures |= {f"{name}_{k}": v for k, v in values.items() if k != "images"}
    if scored:
        figures["mean_iou"] = sum(v["iou"] for _, v in scored) / len(scored)
    return figures
