"""Step progress: a tqdm bar on an interactive terminal, plain log lines otherwise.

Log files and job logs should not fill with carriage-return bar redraws, so the bar is
used only when stderr is a TTY.
"""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm


def _fmt(metrics: dict[str, float]) -> str:
    keys = ("loss", "iou", "dice")
    return " ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)


class StepProgress:
    """Callable ``(step, total, metrics)`` for :func:`train_one_epoch`; use as a context."""

    def __init__(
        self, epoch: int, epochs: int, total: int, start: int, log: logging.Logger
    ) -> None:
        self.epoch, self.epochs, self.total, self.log = epoch, epochs, total, log
        self.start, self.started = start, time.perf_counter()
        # About ten lines per epoch, however long it is.
        self.every = max(1, total // 10)
        self.bar = None
        if sys.stderr.isatty():
            self.bar = tqdm(
                total=total,
                initial=start,
                desc=f"epoch {epoch}/{epochs}",
                unit="step",
                dynamic_ncols=True,
                leave=False,
            )

    def __call__(self, step: int, total: int, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(_fmt(metrics), refresh=False)
            return
        if step % self.every == 0 or step == total:
            elapsed = time.perf_counter() - self.started
            done = step - self.start
            eta = elapsed / done * (total - step) if done else 0.0
            self.log.info(
                "epoch %d/%d step %d/%d %s eta %.0fs",
                self.epoch,
                self.epochs,
                step,
                total,
                _fmt(metrics),
                eta,
            )

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
