"""``unetbg remove``: cut out the people in a few named images, in this process."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from unetbg.removal import FORMATS, KINDS


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the outputs (created if missing).",
)
@click.option(
    "--checkpoint",
    envvar="UNETBG_CHECKPOINT",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Model checkpoint (.pth). Env: UNETBG_CHECKPOINT.",
)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default=None,
    help="cutout (RGBA), mask, color or background. "
    "Default: background with --background, color with --color, else cutout.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Hard mask: person where probability >= T (default: soft edges).",
)
@click.option("--color", default=None, help="Colour for --kind color, e.g. '#ffffff' or 'white'.")
@click.option(
    "--background",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Image to put behind the person (--kind background); resized to cover.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(tuple(FORMATS), case_sensitive=False),
    default="png",
    show_default=True,
    help="png and webp keep transparency; jpeg only for --kind color/background.",
)
@click.option(
    "--device",
    type=click.Choice(("auto", "cpu", "cuda")),
    default="auto",
    show_default=True,
)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
def remove(
    images: tuple[Path, ...],
    output_dir: Path,
    checkpoint: Path,
    kind: str | None,
    threshold: float | None,
    color: str | None,
    background: Path | None,
    output_format: str,
    device: str,
    overwrite: bool,
    batch_size: int,
) -> None:
    """Remove the background around the people in IMAGE... .

    Each output is written to OUTPUT_DIR as <name>.<format> and its path printed
    (inputs sharing a name get <name>.<suffix>.<format>, see docs). Never writes
    over an input. Exits with 1 if any image failed or was skipped.
    """
    from unetbg.images import ImageError
    from unetbg.removal import (
        ItemResult,
        OutputOptions,
        PlanError,
        PlannedItem,
        plan_files,
        process_images,
    )

    if kind is None:
        kind = "background" if background else "color" if color else "cutout"
    fields = {"kind": kind, "threshold": threshold, "format": output_format}
    if color is not None:
        if kind != "color":
            raise click.UsageError(f"--color needs --kind color (got --kind {kind})")
        fields["color"] = color
    if background is not None:
        fields["background"] = background
    try:
        options = OutputOptions(**fields)
        items = plan_files(images, output_dir, options.format, overwrite=overwrite)
    except (PlanError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None

    # torch is imported only now, after the arguments are known to be usable.
    from unetbg.inference import ModelInference
    from unetbg.model import CheckpointError

    try:
        model = ModelInference(checkpoint, device=device, batch_size=batch_size)
    except (CheckpointError, RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # any other way a bad file can break torch.load: no traceback
        raise click.ClickException(
            f"{checkpoint}: cannot load checkpoint: {type(exc).__name__}: {exc}"
        ) from None

    def report(item: PlannedItem, result: ItemResult) -> None:
        if result.ok:
            click.echo(str(result.output))
        else:
            label = "skipped" if result.skipped else "error"
            click.echo(f"{label}: {item.source}: {result.error}", err=True)

    try:
        results = process_images(model, items, options, on_result=report)
    except ImageError as exc:  # the --background image
        raise click.ClickException(f"background: {exc}") from None
    bad = sum(not r.ok for r in results)
    if bad:
        click.echo(f"{len(results) - bad} written, {bad} not written", err=True)
        sys.exit(1)
