"""Options shared by ``unetbg remove`` and ``unetbg remove-dir``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from unetbg.removal import FORMATS, KINDS

F = TypeVar("F", bound=Callable[..., object])

#: Images per model forward pass for ``remove`` and ``remove-dir``: CPU-friendly; raise
#: it with --batch-size on a GPU.
DEFAULT_BATCH_SIZE = 4

batch_size_option = click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Images per model forward pass.",
)


backend_option = click.option(
    "--backend",
    type=click.Choice(["torch", "onnxruntime", "openvino"]),
    default="torch",
    show_default=True,
    help="What runs the network: torch, or (CPU) onnxruntime / openvino from the extras "
    "unetbg[onnxruntime] / unetbg[openvino]. See docs/performance.md.",
)

flip_average_option = click.option(
    "--flip-average/--no-flip-average",
    default=None,
    help="Also run each photo mirrored and average the two masks (twice the network "
    "time), or not. Default: what the checkpoint says.",
)

refine_edges_option = click.option(
    "--refine-edges/--no-refine-edges",
    default=None,
    help="Move the mask's outlines onto the photo's own edges (a guided filter at the "
    "photo's size, about 20 ms per megapixel), or not. Default: what the checkpoint says.",
)


def output_option_flags(command: F) -> F:
    """Add ``--kind``, ``--threshold``, ``--color``, ``--background``, ``--format``
    (parameter ``output_format``) and ``--png-level`` to ``command``; pass ``kind`` through
    :func:`resolve_kind`."""
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


def resolve_kind(kind: str | None, color: str | None, background: Path | None) -> str:
    """The output kind: as given, else ``background`` with a background image, ``color``
    with a colour, else ``cutout``. A colour with another kind is a usage error."""
    if kind is None:
        kind = "background" if background else "color" if color else "cutout"
    if color is not None and kind != "color":
        raise click.UsageError(f"--color needs --kind color (got --kind {kind})")
    return kind
