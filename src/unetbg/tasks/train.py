"""``train_job(job_id)``: run ``fit`` for a recorded training job.

Every finished epoch's figures and every saved checkpoint go to the database as
they happen; ``Job.cancel_requested`` stops the run at its next step (the position
is kept in ``last_model.pth``); a redelivered message resumes from there.
"""

from __future__ import annotations

import time
from pathlib import Path

from celery import shared_task

from unetbg.jobs import claims
from unetbg.tasks.base import CancelFlag, JobCancelled, JobTask

#: Seconds between two writes of a training job's step progress.
STEP_RECORD_S = 2.0


class StepRecorder:
    """``on_step`` for ``fit``: the job's ``step_progress`` (epoch, step/steps, running
    loss, images/s, ETA of the training steps left), written at most every ``every_s``
    seconds and at each epoch's last step, so a long epoch is never silent and a fast one
    never floods the database."""

    def __init__(self, task: JobTask, job_id: str, epochs: int, batch_size: int,
                 every_s: float = STEP_RECORD_S) -> None:  # fmt: skip
        self.task, self.job_id, self.epochs, self.batch_size = task, job_id, epochs, batch_size
        self.every_s = every_s
        self.first: tuple[float, int] | None = None  # (time, global step) of the first call
        self.written = float("-inf")

    def __call__(self, epoch: int, step: int, steps: int, figures: dict) -> None:
        now, done = time.monotonic(), (epoch - 1) * steps + step
        if self.first is None:
            self.first = (now, done - 1)  # this call's own step took place just before
        if now - self.written < self.every_s and step < steps:
            return
        self.written = now
        elapsed, stepped = now - self.first[0], done - self.first[1]
        rate = stepped / elapsed if elapsed > 0 else None
        progress = {
            "epoch": epoch,
            "epochs": self.epochs,
            "step": step,
            "steps": steps,
            "loss": figures.get("loss"),
            "images_per_s": round(rate * self.batch_size, 2) if rate else None,
            "eta_s": round((self.epochs * steps - done) / rate, 1) if rate else None,
        }
        claims.record_step_progress(self.job_id, progress, self.task.settings)


@shared_task(bind=True, base=JobTask, name="unetbg.train_job")
def train_job(self: JobTask, job_id: str) -> dict:
    """Train the job's config into its run folder; returns a small summary."""
    job = self.claim_job(job_id)
    if job is None:
        self.raise_if_cancelled(job_id)
        return {"job": job_id, "ran": False}
    # Heavy imports here, in the worker child, never in the parent before the fork.
    from unetbg.training.config import TrainConfig
    from unetbg.training.fit import fit

    cfg = TrainConfig.from_dict(job.params["config"])
    run_dir = Path(job.params["run_dir"])
    self.log.info("training %s (attempt %d) in %s", cfg.preset, job.attempts, run_dir)

    def on_epoch_end(epoch: int, train: dict, val: dict, lr: float) -> None:
        claims.record_epoch(job_id, epoch, train, val, lr, self.settings)
        self.log.info("epoch %d: val iou %.4f", epoch, val.get("iou", float("nan")))

    def on_checkpoint(path: Path, epoch: int, metrics: dict, is_best: bool) -> None:
        claims.record_checkpoint(job_id, path, epoch, metrics, is_best, self.settings)

    stop = CancelFlag(self, job_id)
    with self.heartbeat(job_id):
        result = fit(
            cfg,
            run_dir,
            on_epoch_end=on_epoch_end,
            on_checkpoint=on_checkpoint,
            should_stop=stop,
            resume=True,
            on_step=StepRecorder(self, job_id, cfg.epochs, cfg.batch_size),
        )
    summary = {
        "status": result.status,
        "epochs_completed": result.epochs_completed,
        "best_epoch": result.best_epoch,
        "best_metrics": result.best_metrics,
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
        "evaluation": result.evaluation,
        "seconds": result.seconds,
    }
    state = "cancelled" if result.status == "cancelled" else "succeeded"
    if not claims.end_owned_job(
        job_id, state, summary, result.epochs_completed, settings=self.settings
    ):
        return {"job": job_id, "ran": True, "status": "taken over"}
    self.log.info("training %s after %d epochs", result.status, result.epochs_completed)
    if result.status == "cancelled":
        raise JobCancelled(
            f"job {job_id}: training cancelled after {result.epochs_completed} epochs"
        )
    return {"job": job_id, "ran": True, "status": result.status}
