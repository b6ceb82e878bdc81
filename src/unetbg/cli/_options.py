"""Options shared by ``unetbg remove`` and ``unetbg remove-dir``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from unetbg.removal import (
    BACKENDS,
    FORMATS,
    KINDS,
    KindConflict,
    OutputOptions,
    RunOptions,
    output_options,
)

F = TypeVar("F", bound=Callable[..., object])

#: Images per model forward pass for ``remove`` and ``remove-dir`` when none is given:
#: ``None``, the own batch of the backend that runs (``unetbg.backends.DEFAULT_BATCH``).
DEFAULT_BATCH_SIZE = RunOptions().batch_size

batch_size_option = click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    help="Images per model forward pass. Default: the backend's own (4 on the CPU, 8 on "
    "CUDA: unetbg.backends.DEFAULT_BATCH, docs/performance.md).",
)


backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=RunOptions().backend,
    show_default=True,
    help="What runs the network: auto (the fastest installed for the device, said on "
    "stderr), torch, or (CPU) onnxruntime / openvino from the extras unetbg[onnxruntime] "
    "/ unetbg[openvino]. See docs/performance.md.",
)


def checkpoint_switches(command: F) -> F:
    """Add ``--NAME/--no-NAME`` for each :class:`RunOptions` switch that overrides the
    checkpoint's preprocessing (default: what the checkpoint says); the command gets
    them as keywords, for :meth:`RunOptions.take`."""
    for name, help in reversed(RunOptions.switches()):
        flag = name.replace("_", "-")
        command = click.option(f"--{flag}/--no-{flag}", default=None, help=help)(command)
    return command


def output_option_flags(command: F) -> F:
    """Add ``--kind``, ``--threshold``, ``--color``, ``--background``, ``--format``
    (parameter ``output_format``) and ``--png-level`` to ``command``; pass them through
    :func:`output_options_from_flags`."""
    decorators = [
        click.option(
            "--kind",
            type=click.Choice(KINDS),
            default=None,
            help="cutout (RGBA), mask, color or background. "
            "Default: background with --background, color with --color, else cutout.",
        ),
        click.option(
            "--threshold",
            type=click.FloatRange(0.0, 1.0),
            default=None,
            help="Hard mask: person where probability >= T (default: soft edges).",
        ),
        click.option(
            "--color", default=None, help="Colour for --kind color, e.g. '#ffffff' or 'white'."
        ),
        click.option(
            "--background",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="Image to put behind the person (--kind background); resized to cover.",
        ),
        click.option(
            "--format",
            "output_format",
            type=click.Choice(tuple(FORMATS), case_sensitive=False),
            default="png",
            show_default=True,
            help="png and webp keep transparency; jpeg only for --kind color/background.",
        ),
        click.option(
            "--png-level",
            type=click.IntRange(0, 9),
            default=None,
            help="PNG zlib level (default 1: fast; 9: ~10 % smaller files, ~10x slower to "
            "write; docs/performance.md).",
        ),
    ]
    # Stacked decorators apply bottom-up: the same here keeps this order in --help.
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def output_options_from_flags(
    kind: str | None,
    color: str | None,
    background: Path | None,
    output_format: str,
    threshold: float | None,
    png_level: int | None,
) -> OutputOptions:
    """The output options of ``--kind``, ``--color``, … (:func:`unetbg.removal.output_options`
    picks the kind); a colour with another kind, or a bad combination, is a usage error."""
    try:
        return output_options(
            kind,
            color,
            background,
            format=output_format,
            threshold=threshold,
            png_level=png_level,
        )
    except KindConflict as exc:
        raise click.UsageError(f"--color needs --kind color (got --kind {exc.kind})") from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
