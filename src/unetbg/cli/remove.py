"""``unetbg remove``: cut out the people in a few named images, in this process."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from unetbg.cli._options import (
    backend_option,
    batch_size_option,
    checkpoint_switches,
    output_option_flags,
    output_options_from_flags,
)
from unetbg.cli._service import (
    RequestError,
    checkpoint_option,
    checkpoint_path,
    usable_device,
)
from unetbg.removal import SKIP_EXISTS, RunOptions

#: ``-`` as IMAGE reads stdin, as ``-o`` writes stdout (one image), as rembg does.
STDIO = "-"


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(allow_dash=True, path_type=Path))
@click.option(
    "-o",
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False, allow_dash=True, path_type=Path),
    help="Folder for the outputs (created if missing); not the folder of an input. "
    "'-': write the one output to stdout.",
)
@checkpoint_option()
@output_option_flags
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto, cpu, cuda or cuda:N (cuda without a GPU fails).",
)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@batch_size_option
@backend_option
@checkpoint_switches
def remove(images: tuple[Path, ...], output_dir: Path, **options) -> None:
    """Remove the background around the people in IMAGE... .

    Each output is written to OUTPUT_DIR as <name>.<format> and its path printed
    (inputs sharing a name get <name>.<suffix>.<format>, see docs). Never writes
    over an input, nor into an input's folder. The model and device used are
    reported on stderr. An output that already exists is skipped (kept) unless
    --overwrite, so the same command run again does only what is missing.
    An output that shows no person (under 0.1 % of the photo) is written all the
    same, with "no person found in IMAGE" on stderr.

    As rembg users pipe it, `-` reads one image from stdin and `-o -` writes the one
    output to stdout: `unetbg remove - -o - < in.jpg > out.png`.

    A piped image's output (OUTPUT_DIR/stdin.<format>) is never skipped: when it
    exists, nothing is written and the exit status is 1 (add --overwrite).

    Exit status: 0 every image written (or skipped: its output exists), 1 an image
    failed (or a piped image's output exists), 2 usage error (bad option, missing
    input file, an output folder that cannot be created or written, no such
    checkpoint, a checkpoint that cannot be loaded, a device this machine lacks) -
    then nothing is loaded or written.
    """
    to_stdout = str(output_dir) == STDIO
    if (to_stdout or any(str(p) == STDIO for p in images)) and len(images) != 1:
        raise click.UsageError("'-' (stdin) and '-o -' (stdout) take exactly one image")
    if to_stdout and sys.stdout.isatty():
        raise click.UsageError("refusing to write an image to a terminal: redirect stdout")
    missing = [str(p) for p in images if str(p) != STDIO and not p.exists()]
    if missing:  # before anything loads, like every other usage error
        raise click.UsageError(f"no such file: {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="unetbg-remove-") as scratch:
        sources, names = list(images), {}
        if str(images[0]) == STDIO:
            sources[0] = Path(scratch) / "stdin"  # read by its content, as every named file
            sources[0].write_bytes(sys.stdin.buffer.read())
            names[str(sources[0])] = "- (stdin)"
        out = Path(scratch) / "out" if to_stdout else output_dir
        results = _remove(sources, out, names, to_stdout, RunOptions.take(options), **options)
        if to_stdout and results[0].ok:
            sys.stdout.buffer.write(Path(results[0].output).read_bytes())
            sys.stdout.buffer.flush()
    bad = sum(not r.ok and r.error != SKIP_EXISTS for r in results)
    if bad:
        sys.exit(1)


def _remove(
    images: list[Path],
    output_dir: Path,
    names: dict[str, str],
    to_stdout: bool,
    run: RunOptions,
    *,
    checkpoint: str,
    kind: str | None,
    threshold: float | None,
    color: str | None,
    background: Path | None,
    output_format: str,
    overwrite: bool,
    png_level: int | None,
):
    """Plan, load, process; report each image on stdout/stderr. Returns the results.
    ``names`` shows some sources under another name (stdin's scratch file)."""
    from unetbg.images import ImageError
    from unetbg.removal import PlanError, plan_files, process_images

    options = output_options_from_flags(
        kind, color, background, output_format, threshold, png_level
    )
    try:
        items = plan_files(images, output_dir, options.format, overwrite=overwrite)
    except (PlanError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    _refuse_piped_over_existing(items, names)
    checkpoint = checkpoint_path(checkpoint)  # exit status 2 when there is none
    usable_device(run.device, here=True)  # exit status 2 for cuda without a GPU
    model = _load_model(checkpoint, run)
    try:
        results = process_images(model, items, options, on_result=_reporter(names, to_stdout))
    except ImageError as exc:  # the --background image
        raise click.ClickException(f"background: {exc}") from None
    _summarize(results)
    return results


def _refuse_piped_over_existing(items, names: dict[str, str]) -> None:
    """Exit status 1 (an image not written), before the model loads, when the piped
    image's output exists. A named file's existing output is skipped as done, so a
    command run again does only what is missing; a piped image has no name to tell
    it was done before (``stdin.png`` is most likely another image's), so keeping the
    old file would silently answer with the wrong picture."""
    for item in items:
        if str(item.source) in names and item.skip_reason == SKIP_EXISTS:
            click.echo(
                f"error: {names[str(item.source)]}: {item.output} exists (from an earlier "
                "piped image?): not written; --overwrite replaces it, `-o -` writes to stdout",
                err=True,
            )
            sys.exit(1)


def _load_model(checkpoint: str, run: RunOptions):
    """The model, loaded now (torch is imported only here, once the arguments are known
    to be usable); says on stderr what runs it. A file that is no usable checkpoint is
    exit status 2."""
    from unetbg.backends import BackendUnavailable
    from unetbg.inference import ModelInference
    from unetbg.model import CheckpointError
    from unetbg.removal import describe_run

    try:
        model = ModelInference(checkpoint, run)
    except BackendUnavailable as exc:
        raise click.UsageError(str(exc)) from None
    except CheckpointError as exc:  # the file named is not a usable checkpoint
        raise RequestError(f"refusing checkpoint {exc}") from None
    except (RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # any other way a bad file can break torch.load: no traceback
        raise RequestError(
            f"{checkpoint}: cannot load checkpoint: {type(exc).__name__}: {exc}"
        ) from None
    click.echo(
        f"model on {model.device} (checkpoint {checkpoint}, "
        f"image size {model.preprocessing.image_size}{describe_run(model.preprocessing)})",
        err=True,
    )
    click.echo(model.backend_said, err=True)
    return model


def _reporter(names: dict[str, str], to_stdout: bool):
    """The per-image report: each output's path on stdout; skips, errors and outputs
    that show no person (``removal.presence``) on stderr."""

    def report(item, result) -> None:
        source = names.get(str(item.source), item.source)
        if result.ok:
            if not to_stdout:
                click.echo(str(result.output))
            if result.no_person:  # written all the same: the user decides
                click.echo(f"no person found in {source}", err=True)
        elif result.error == SKIP_EXISTS and result.output is not None:
            click.echo(f"skipped: {source}: {result.output} {SKIP_EXISTS}", err=True)
        else:
            label = "skipped" if result.skipped else "error"
            click.echo(f"{label}: {source}: {result.error}", err=True)

    return report


def _summarize(results) -> None:
    """One line on stderr when an image was skipped or not written."""
    existing = sum(r.error == SKIP_EXISTS for r in results)
    bad = sum(not r.ok for r in results) - existing
    if bad or existing:
        summary = [f"{len(results) - bad - existing} written"]
        if existing:
            summary.append(f"{existing} skipped (output exists)")
        if bad:
            summary.append(f"{bad} not written")
        click.echo(", ".join(summary), err=True)
