"""``unetbg evaluate``: score a checkpoint on a COCO split at the original resolution."""

from __future__ import annotations

import json
import sys

import click

from unetbg.cli._evaluate_options import check_evaluation_options, evaluation_options
from unetbg.cli._service import RequestError, checkpoint_path, usable_device
from unetbg.settings import CHECKPOINT_ENV

_ROWS = (("IoU", "iou"), ("Dice", "dice"), ("pixel accuracy", "pixel_accuracy"))


@click.command(
    epilog="\b\nExit status: 0 scored, 1 the evaluation failed, 2 usage error (bad option, "
    "missing folder, no such checkpoint or one that cannot be loaded, a device this machine "
    "lacks): nothing is loaded then."
)
@click.argument("checkpoint", default="best", required=False, envvar=CHECKPOINT_ENV)
@evaluation_options
@click.option(
    "--group-by",
    multiple=True,
    metavar="COLUMN[,COLUMN]",
    help="Also score each value of this column of a mask folder's manifest.tsv (first "
    "column 'name', as studio-val has): e.g. backdrop, framing, or framing,backdrop for "
    "pairs. Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate(
    checkpoint,
    coco_root,
    data,
    split,
    val_percent,
    limit,
    threshold,
    device,
    batch_size,
    image_size,
    group_by,
    as_json,
    **switches,
) -> None:
    """IoU, Dice and pixel accuracy of CHECKPOINT at each photo's own resolution, next to
    the all-person baseline (every pixel called person). Crowd/ignore areas are not scored.

    The pooled IoU comes with a 90 % interval (the pooled IoU over resamplings of the
    photos), to tell how much a small validation set can say.

    CHECKPOINT (default: $UNETBG_CHECKPOINT, else best): 'best' (the best model here, the
    default model unless a registered checkpoint beats it; `unetbg checkpoints` says
    which), 'default', a registered checkpoint id or a .pth path. Score one COCO split
    (--coco-root), mask folders and COCO folders (--data), or both: each source gets its
    own figures, and the overall ones pool every pixel.
    """
    data = check_evaluation_options(coco_root, data, image_size)
    checkpoint = checkpoint_path(checkpoint)  # exit status 2 when there is none
    usable_device(device, here=True)  # exit status 2 for cuda without a GPU
    from unetbg.data import CocoError
    from unetbg.data.folders import MaskFolderError
    from unetbg.model import CheckpointError
    from unetbg.training.evaluation import evaluate_checkpoint

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            click.echo(f"\rscored {done}/{total} images", err=True, nl=done == total)

    try:
        result = evaluate_checkpoint(
            checkpoint,
            coco_root,
            split,
            device=device,
            threshold=threshold,
            limit=limit,
            batch_size=batch_size,
            data=data,
            val_percent=val_percent,
            progress=progress,
            image_size=image_size,
            group_by=group_by,
            **switches,  # the RunOptions switches, by their names
        )
    except CocoError as exc:  # --coco-root is not a COCO folder for this split
        raise click.BadParameter(str(exc), param_hint="'--coco-root'") from None
    except MaskFolderError as exc:
        raise click.BadParameter(str(exc), param_hint="'--data'") from None
    except CheckpointError as exc:  # the file named is not a usable checkpoint
        raise RequestError(f"refusing checkpoint {exc}") from None
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_table(checkpoint, result, split, threshold)
    below = [
        name
        for name, figures in [("overall", result), *result.get("sources", {}).items()]
        if figures["iou"] < figures["baseline"]["iou"]
    ]
    if below:
        click.echo(
            f"warning: the model scores below the all-person baseline ({', '.join(below)}): "
            "it is barely trained or trained for other photos",
            err=True,
        )


def _print_table(checkpoint, result: dict, split: str, threshold: float) -> None:
    from unetbg.model.metrics import INTERVAL_RESAMPLES
    from unetbg.removal import describe_run

    base = result["baseline"]
    click.echo(
        f"{checkpoint} (epoch {result['epoch']}) on {result['images']} {split} images, "
        f"threshold {threshold}, letterbox {result['image_size']} px"
        f"{describe_run(result)}, {result['device']}, "
        f"{result['seconds']:.1f}s"
    )
    click.echo(f"{'':16} {'pooled':>9} {'per image':>9} {'baseline':>9} {'per image':>9}")
    for label, key in _ROWS:
        click.echo(
            f"{label:16} {result[key]:9.4f} {result[key + '_macro']:9.4f} "
            f"{base[key]:9.4f} {base[key + '_macro']:9.4f}"
        )
    low, high = result["iou_interval"]
    click.echo(f"pooled IoU, 90 % of photo resamplings: {low:.4f}–{high:.4f}")
    sources = result.get("sources", {})
    if sources:
        width = max(len(n) for n in sources)
        click.echo(
            f"\n{'source':{width}} {'images':>6} {'IoU':>7} {'90 % interval':>13} "
            f"{'Dice':>7} {'baseline IoU':>12}"
        )
        for name, figures in sources.items():
            interval = "{:.3f}–{:.3f}".format(*figures["iou_interval"])
            click.echo(
                f"{name:{width}} {figures['images']:6d} {figures['iou']:7.4f} {interval:>13} "
                f"{figures['dice']:7.4f} {figures['baseline']['iou']:12.4f}"
            )
        click.echo(f"mean IoU over sources: {result['mean_iou']:.4f}")
    for name, figures in [("", result), *sources.items()]:
        _print_empty(name, figures["empty"])
        _print_misses(name, figures)
        _print_groups(name, figures.get("groups", {}))
    click.echo(
        "pooled: all pixels together (micro); per image: mean over images (macro); "
        "baseline: every pixel called person; interval: the pooled IoU of "
        f"{INTERVAL_RESAMPLES:,} draws of as many photos with replacement"
    )
    if result["unreadable"]:
        click.echo(
            f"skipped {len(result['unreadable'])} unreadable image(s): {result['unreadable']}"
        )


def _print_misses(name: str, figures: dict) -> None:
    """Missed photos and how clean the transparency is (``name``: a source or all)."""
    from unetbg.training.evaluation import LOW_IOU, AlphaFigures

    where = f" in {name}" if name else ""
    alpha = figures["alpha"]
    click.echo(
        f"photos{where} with a person scored below IoU {LOW_IOU}: {figures['low_iou']}; "
        f"background pixels with alpha >= {AlphaFigures.VISIBLE}/255: "
        f"{alpha['background_alpha']:.1%}; mean alpha of photos without people: "
        f"{alpha['empty_mean_alpha']:.4f}"
    )


def _print_groups(name: str, groups: dict) -> None:
    """One table per --group-by column of a source."""
    for column, by_value in groups.items():
        width = max(len(column), *(len(v) for v in by_value))
        click.echo(f"\n{name} by {column}:")
        click.echo(f"{column:{width}} {'images':>6} {'IoU':>7} {'per image':>9} {'IoU < 0.2':>9}")
        for value, f in by_value.items():
            click.echo(
                f"{value:{width}} {f['images']:6d} {f['iou']:7.4f} {f['iou_macro']:9.4f} "
                f"{f['low_iou']:9d}"
            )


def _print_empty(name: str, empty: dict) -> None:
    """One line on the photos without people (``name``: a source; empty: all of them)."""
    if not empty["images"]:
        return
    where = f" in {name}" if name else ""
    click.echo(
        f"photos without people{where}: {empty['images']}; a person called on "
        f"{empty['with_false_person']} of them (> 1 % of the photo), "
        f"{empty['false_person']:.1%} of their pixels on average"
    )
