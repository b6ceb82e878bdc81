"""``unetbg train``: run ``unetbg.training.fit`` in the foreground.

One ``--option`` per ``TrainConfig`` field (``cli/_train_options.py``, shared with
``submit-train``). Only options given on the command line override the preset (or, with
``--resume``, the run's saved config.json).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from datetime import datetime
from pathlib import Path

import click

from unetbg.cli._train_options import field_options, field_overrides
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


class _CheckpointRegistry:
    """``on_checkpoint`` for a foreground run: register best/last in the job database
    (no job), so ``--checkpoint best`` and ``unetbg checkpoints`` see them like a
    submitted run's. A database that cannot be reached costs a warning, not the run."""

    def __init__(self) -> None:
        self.failed = False

    def __call__(self, path: Path, epoch: int, metrics: dict, is_best: bool) -> None:
        if self.failed:
            return
        from unetbg.jobs import db_session, register_checkpoint

        try:
            with db_session() as session:
                register_checkpoint(session, None, path, epoch, metrics, is_best)
        except Exception as exc:
            self.failed = True
            logging.getLogger("unetbg").warning(
                "checkpoints of this run are not registered (%s: %s); "
                "pass the file with --checkpoint PATH",
                type(exc).__name__,
                exc,
            )


@click.command(
    epilog="\b\nExit status: 0 the run ended (finished, or stopped early), 1 it failed, "
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
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="KIND:PATH[:WEIGHT]",
    help="Training source, repeatable: coco:DIR (a COCO 2017 folder; trains on train2017, "
    "validates on val2017) or masks:DIR (images/ + masks/ [+ ignore/]; about --val-percent "
    "% of the names, by hash, validate). WEIGHT is the source's share of each epoch "
    "(default 1). Replaces the preset's sources.",
)
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
    The checkpoints are registered like a submitted run's (`unetbg checkpoints`).
    """
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

    from unetbg.data import CocoError
    from unetbg.model import CheckpointError, EncoderWeightsError
    from unetbg.training.fit import fit

    _setup_logging()
    click.echo(f"run folder: {run_dir}")
    fresh = resume_dir is None
    existed = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else None
    try:
        result = fit(cfg, run_dir, on_checkpoint=_CheckpointRegistry(), resume=not fresh)
    except (CocoError, EncoderWeightsError, CheckpointError) as exc:
        if fresh:
            _forget_failed_start(run_dir, existed)
        if isinstance(exc, CocoError):  # not a usable COCO folder: fails before any step
            raise click.BadParameter(str(exc), param_hint="'--coco-root'") from exc
        if isinstance(exc, EncoderWeightsError) and cfg.encoder_weights == "imagenet":
            cause = exc.__cause__ or exc
            raise _WeightsUnavailable(
                "ImageNet encoder weights: download failed (offline?): pass "
                "--encoder-weights /path/resnet34.pth (a torchvision ResNet34 state_dict) "
                f"or --encoder-weights none ({type(cause).__name__}: {cause})"
            ) from exc
        raise click.ClickException(str(exc)) from exc
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
    click.echo(f"best checkpoint: {result.best_checkpoint}")
