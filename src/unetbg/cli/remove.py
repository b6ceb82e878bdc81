"""``unetbg remove``: cut out the people in a few named images, in this process."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from unetbg.cli._options import batch_size_option, output_option_flags, resolve_kind
from unetbg.cli._service import checkpoint_path
from unetbg.settings import CHECKPOINT_ENV


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the outputs (created if missing); not the folder of an input.",
)
@click.option(
    "--checkpoint",
    envvar=CHECKPOINT_ENV,
    default="best",
    show_default=True,
    help="'best' (registered checkpoint with the best val IoU), a registered "
    f"checkpoint id (`unetbg checkpoints`) or a .pth path. Env: {CHECKPOINT_ENV}.",
)
@output_option_flags
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto, cpu, cuda or cuda:N (cuda without a GPU fails).",
)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@batch_size_option
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnxruntime", "openvino"]),
    default="torch",
    show_default=True,
    help="What runs the network: torch, or (CPU) onnxruntime / openvino from the extras "
    "unetbg[onnxruntime] / unetbg[openvino]. See docs/performance.md.",
)
@click.option(
    "--png-level",
    type=click.IntRange(0, 9),
    default=None,
    help="PNG zlib level (default 1: fast; 9: ~10 % smaller files, ~10x slower to write).",
)
def remove(
    images: tuple[Path, ...],
    output_dir: Path,
    checkpoint: str,
    kind: str | None,
    threshold: float | None,
    color: str | None,
    background: Path | None,
    output_format: str,
    device: str,
    overwrite: bool,
    batch_size: int,
    backend: str,
    png_level: int | None,
) -> None:
    """Remove the background around the people in IMAGE... .

    Each output is written to OUTPUT_DIR as <name>.<format> and its path printed
    (inputs sharing a name get <name>.<suffix>.<format>, see docs). Never writes
    over an input, nor into an input's folder. The model and device used are
    reported on stderr. An output that already exists is skipped (kept) unless
    --overwrite, so the same command run again does only what is missing. Exits with
    0 when every image was written or skipped because its output exists, 1 if any
    failed, 2 on a usage error (bad option, no such checkpoint).
    """
    from unetbg.images import ImageError
    from unetbg.removal import (
        SKIP_EXISTS,
        ItemResult,
        OutputOptions,
        PlanError,
        PlannedItem,
        plan_files,
        process_images,
    )

    kind = resolve_kind(kind, color, background)
    fields = {"kind": kind, "threshold": threshold, "format": output_format}
    if png_level is not None:
        fields["png_level"] = png_level
    if color is not None:
        fields["color"] = color
    if background is not None:
        fields["background"] = background
    try:
        options = OutputOptions(**fields)
        items = plan_files(images, output_dir, options.format, overwrite=overwrite)
    except (PlanError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    checkpoint = checkpoint_path(checkpoint)  # exit status 2 when there is none

    # torch is imported only now, after the arguments are known to be usable.
    from unetbg.backends import BackendUnavailable
    from unetbg.inference import ModelInference
    from unetbg.model import CheckpointError, resolve_device

    try:
        resolve_device(device)
    except ValueError as exc:  # not a device name at all
        raise click.BadParameter(str(exc), param_hint="'--device'") from None
    except RuntimeError as exc:  # a device this machine does not have
        raise click.ClickException(str(exc)) from None
    try:
        model = ModelInference(checkpoint, device=device, batch_size=batch_size, backend=backend)
    except BackendUnavailable as exc:
        raise click.UsageError(str(exc)) from None
    except (CheckpointError, RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # any other way a bad file can break torch.load: no traceback
        raise click.ClickException(
            f"{checkpoint}: cannot load checkpoint: {type(exc).__name__}: {exc}"
        ) from None
    click.echo(
        f"model on {model.device} (checkpoint {checkpoint}, "
        f"image size {model.preprocessing.image_size})",
        err=True,
    )
    if backend != "torch":
        click.echo(f"network run by {backend}", err=True)

    def report(item: PlannedItem, result: ItemResult) -> None:
        if result.ok:
            click.echo(str(result.output))
        elif result.error == SKIP_EXISTS and result.output is not None:
            click.echo(f"skipped: {item.source}: {result.output} {SKIP_EXISTS}", err=True)
        else:
            label = "skipped" if result.skipped else "error"
            click.echo(f"{label}: {item.source}: {result.error}", err=True)

    try:
        results = process_images(model, items, options, on_result=report)
    except ImageError as exc:  # the --background image
        raise click.ClickException(f"background: {exc}") from None
    existing = sum(r.error == SKIP_EXISTS for r in results)
    bad = sum(not r.ok for r in results) - existing
    if bad or existing:
        summary = [f"{len(results) - bad - existing} written"]
        if existing:
            summary.append(f"{existing} skipped (output exists)")
        if bad:
            summary.append(f"{bad} not written")
        click.echo(", ".join(summary), err=True)
    if bad:
        sys.exit(1)
