"""``unetbg evaluate``: score a checkpoint on a COCO split at the original resolution."""

from __future__ import annotations

import json
from pathlib import Path

import click

from unetbg.cli._service import checkpoint_path

_ROWS = (("IoU", "iou"), ("Dice", "dice"), ("pixel accuracy", "pixel_accuracy"))


@click.command()
@click.argument("checkpoint")
@click.option(
    "--coco-root",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="COCO 2017 folder (annotations/, train2017/, val2017/).",
)
@click.option("--split", type=click.Choice(["train", "val"]), default="val", show_default=True)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Score only the first N images."
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.5,
    show_default=True,
    help="Probability above which a pixel is a person.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate(checkpoint, coco_root, split, limit, threshold, device, batch_size, as_json) -> None:
    """IoU, Dice and pixel accuracy of CHECKPOINT, next to the all-foreground baseline.

    CHECKPOINT: 'best' (registered checkpoint with the best val IoU), a registered
    checkpoint id (`unetbg checkpoints`) or a .pth path.
    """
    checkpoint = checkpoint_path(checkpoint)  # exit status 2 when there is none
    from unetbg.data import CocoError
    from unetbg.model import CheckpointError
    from unetbg.training.evaluation import evaluate_checkpoint

    try:
        result = evaluate_checkpoint(
            checkpoint,
            coco_root,
            split,
            device=device,
            threshold=threshold,
            limit=limit,
            batch_size=batch_size,
        )
    except CocoError as exc:  # --coco-root is not a COCO folder for this split
        raise click.BadParameter(str(exc), param_hint="'--coco-root'") from None
    except (CheckpointError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    base = result["baseline"]
    click.echo(
        f"{checkpoint} (epoch {result['epoch']}) on {result['images']} {split} images, "
        f"threshold {threshold}, {result['device']}, {result['seconds']:.1f}s"
    )
    # The all-foreground baseline (every pixel "person") is the floor to beat.
    click.echo(f"{'':16} {'micro':>8} {'macro':>8} {'all-fg':>8} {'all-fg m':>8}")
    for label, key in _ROWS:
        click.echo(
            f"{label:16} {result[key]:8.4f} {result[key + '_macro']:8.4f} "
            f"{base[key]:8.4f} {base[key + '_macro']:8.4f}"
        )
    if result["unreadable"]:
        click.echo(
            f"skipped {len(result['unreadable'])} unreadable image(s): {result['unreadable']}"
        )
