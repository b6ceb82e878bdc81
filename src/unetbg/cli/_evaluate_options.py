"""The options of ``unetbg evaluate`` and ``unetbg submit-evaluate``: one set, so a job
scores exactly what the foreground command would (the same sources, split, size and
switches), and one check of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from unetbg.cli._options import checkpoint_switches

F = TypeVar("F", bound=Callable[..., object])


def evaluation_options(command: F) -> F:
    """Add ``--coco-root``, ``--data``, ``--split``, ``--val-percent``, ``--limit``,
    ``--threshold``, ``--device``, ``--batch-size``, ``--image-size`` and the checkpoint
    switches (``--flip-average``, ``--refine-edges``: keywords by their names) to
    ``command``; check them with :func:`check_evaluation_options`."""
    decorators = [
        click.option(
            "--coco-root",
            type=click.Path(file_okay=False, exists=True, path_type=Path),
            default=None,
            help="COCO 2017 folder (annotations/, train2017/, val2017/); its --split is "
            "scored. A job's folders must be where the workers see them.",
        ),
        click.option(
            "--data",
            multiple=True,
            metavar="KIND:PATH",
            help="More sources to score, repeatable: coco:DIR (its --split) or masks:DIR "
            "(its validation part, by file-name hash as in training).",
        ),
        click.option(
            "--split", type=click.Choice(["train", "val"]), default="val", show_default=True
        ),
        click.option(
            "--val-percent",
            type=click.IntRange(0, 100),
            default=10,
            show_default=True,
            help="Validation share of mask folders (as the run was trained with).",
        ),
        click.option(
            "--limit",
            type=click.IntRange(min=1),
            default=None,
            help="Score only the first N images of each source.",
        ),
        click.option(
            "--threshold",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            default=0.5,
            show_default=True,
            help="Probability above which a pixel is a person.",
        ),
        click.option(
            "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
        ),
        click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True),
        click.option(
            "--image-size",
            type=click.IntRange(min=32),
            default=None,
            help="Letterbox size to run the model at (a multiple of 32; default: the "
            "checkpoint's own), to see how it fares at another resolution.",
        ),
        checkpoint_switches,
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def check_evaluation_options(
    coco_root: Path | None, data: tuple[str, ...], image_size: int | None
) -> tuple[str, ...]:
    """Usage errors (exit status 2, before anything loads or is recorded): no source at
    all, a malformed ``--data`` spec or one whose folder is missing, an ``--image-size``
    that is not a multiple of 32. Returns the ``--data`` specs with absolute paths (a
    job's cross to the workers)."""
    if coco_root is None and not data:
        raise click.UsageError("give --coco-root or at least one --data source")
    if image_size is not None and image_size % 32:
        raise click.BadParameter(
            f"{image_size} is not a multiple of 32", param_hint="'--image-size'"
        )
    from unetbg.data.sources import DataSource

    try:
        sources = [DataSource.parse(spec) for spec in data]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--data'") from None
    for source in sources:
        if not Path(source.path).is_dir():
            raise click.BadParameter(f"no such folder: {source.path}", param_hint="'--data'")
    return tuple(source.spec() for source in sources)
