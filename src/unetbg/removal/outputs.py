"""What each output looks like, and writing it: formats, :class:`OutputOptions`,
rendering (:func:`render_output`), encoding and the atomic write of one output."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageColor

from unetbg.images import read_image, to_rgb_array, write_atomic
from unetbg.removal.formats import FORMATS, KINDS, normalize_format
from unetbg.removal.planning import SKIP_EXISTS, PlanError, PlannedItem


class OutputExistsError(FileExistsError):
    """Writing without ``overwrite`` found a file at the output (created after planning)."""


def parse_color(value: str | Sequence[int]) -> tuple[int, int, int]:
    """``"#ffffff"``, ``"#fff"``, ``"white"``, ``"rgb(0,128,0)"`` or an RGB tuple -> RGB tuple."""
    if isinstance(value, str):
        try:
            rgb = ImageColor.getrgb(value.strip())
        except ValueError:
            raise ValueError(
                f"cannot parse colour {value!r}; use '#rrggbb', '#rgb' or a name like 'white'"
            ) from None
    else:
        rgb = tuple(value)
    if len(rgb) == 4 and rgb[3] == 255:
        rgb = rgb[:3]
    if len(rgb) != 3 or not all(isinstance(c, int | np.integer) and 0 <= c <= 255 for c in rgb):
        raise ValueError(f"colour must be three integers 0-255 (opaque), got {value!r}")
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]))


@dataclass(frozen=True)
class OutputOptions:
    """What to write for each image.

    ``kind``: ``cutout`` (RGBA, alpha = person probability, soft edges),
    ``mask`` (grayscale alpha), ``color`` (person composited on ``color``) or
    ``background`` (person composited on ``background``, an image path, PIL image or
    array, resized and centre-cropped to cover each photo). ``threshold`` makes the
    alpha hard (``probability >= threshold``). ``format``: ``png``, ``webp`` (both keep
    alpha) or ``jpeg`` (only for ``color``/``background``: JPEG has no alpha).
    ``png_level``: zlib level 0-9 for PNG (``None``: :data:`DEFAULT_PNG_LEVEL`, 1;
    9 makes files ~10 % smaller and encoding ~10× slower, docs/performance.md).
    """

    kind: str = "cutout"
    threshold: float | None = None
    color: tuple[int, int, int] | str = (255, 255, 255)
    background: Any = field(default=None, compare=False)
    format: str = "png"
    png_level: int | None = None

    def to_params(self) -> dict[str, Any]:
        """These options as JSON, as a remove-dir job stores them (``params["options"]``);
        the background is recorded by path."""
        return {
            "kind": self.kind,
            "threshold": self.threshold,
            "color": list(self.color),
            "background": self.background,
            "format": self.format,
            "png_level": self.png_level,
        }

    @classmethod
    def from_params(cls, stored: dict[str, Any]) -> OutputOptions:
        """Inverse of :meth:`to_params` (jobs recorded before ``png_level`` lack it)."""
        return cls(**dict(stored) | {"color": tuple(stored["color"])})

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        fmt = normalize_format(self.format)
        object.__setattr__(self, "format", fmt)
        if fmt == "jpeg" and self.kind not in ("color", "background"):
            raise ValueError(
                f"format jpeg cannot store kind {self.kind!r} (JPEG has no alpha channel and "
                "blurs mask edges); use png or webp, or kind color/background"
            )
        if self.threshold is not None:
            t = float(self.threshold)
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"threshold must be between 0 and 1, got {self.threshold!r}")
            object.__setattr__(self, "threshold", t)
        object.__setattr__(self, "color", parse_color(self.color))
        if self.kind == "background" and self.background is None:
            raise ValueError("kind 'background' needs a background image")
        if self.kind != "background" and self.background is not None:
            raise ValueError(f"a background image was given but kind is {self.kind!r}")
        if self.png_level is not None:
            if isinstance(self.png_level, bool) or int(self.png_level) not in range(10):
                raise ValueError(f"png_level must be 0-9, got {self.png_level!r}")
            object.__setattr__(self, "png_level", int(self.png_level))

    @property
    def suffix(self) -> str:
        """The output file suffix for this format."""
        return FORMATS[self.format][1]


# ------------------------------------------------------------------------- rendering


def _cover(background: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to cover ``width×height`` keeping the aspect ratio, then centre-crop."""
    bh, bw = background.shape[:2]
    scale = max(width / bw, height / bh)
    new_w, new_h = max(width, round(bw * scale)), max(height, round(bh * scale))
    resized = Image.fromarray(background).resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return np.asarray(resized.crop((left, top, left + width, top + height)))


def render_output(
    rgb: np.ndarray,
    probability: np.ndarray,
    options: OutputOptions,
    background: np.ndarray | None = None,
) -> Image.Image:
    """Turn an ``H×W×3`` uint8 image and its ``H×W`` probability into the output image.

    The result always has the input's width and height. ``background`` is the
    already-read background array for kind ``background`` (any size).
    """
    height, width = rgb.shape[:2]
    if probability.shape != (height, width):
        raise ValueError(f"probability shape {probability.shape} != image shape {(height, width)}")
    alpha = np.clip(probability.astype(np.float32), 0.0, 1.0)
    if options.threshold is not None:
        alpha = (alpha >= options.threshold).astype(np.float32)
    alpha8 = np.rint(alpha * 255.0).astype(np.uint8)
    if options.kind == "mask":
        return Image.fromarray(alpha8, "L")
    if options.kind == "cutout":
        return Image.fromarray(np.dstack([rgb, alpha8]), "RGBA")
    if options.kind == "color":
        back = np.broadcast_to(np.asarray(options.color, dtype=np.float32), rgb.shape)
    else:
        if background is None:
            raise ValueError("kind 'background' needs the background array")
        back = _cover(background, width, height).astype(np.float32)
    a = alpha[:, :, None]
    out = rgb.astype(np.float32) * a + back * (1.0 - a)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def save_params(options: OutputOptions) -> tuple[str, dict[str, Any]]:
    """Pillow format name and save parameters for ``options``."""
    pil_format, _, params = FORMATS[options.format]
    params = dict(params)
    if options.format == "webp" and options.kind == "mask":
        params = {"lossless": True}  # lossy WebP would smear the mask's edges
    if options.format == "png" and options.png_level is not None:
        params["compress_level"] = options.png_level
    return pil_format, params


def load_background(options: OutputOptions) -> np.ndarray | None:
    """Read ``options.background`` once (path, PIL image or array); ``None`` if unused."""
    bg = options.background
    if bg is None:
        return None
    if isinstance(bg, str | os.PathLike):
        return read_image(bg)
    return to_rgb_array(bg)


# --------------------------------------------------------------------------- writing


def _check_output(item: PlannedItem) -> Path:
    output = item.output
    if output is None:
        raise ValueError(f"{item.source} has no planned output")
    if item.output_root is not None:
        root = item.output_root.resolve()
        if not output.resolve().is_relative_to(root):
            raise PlanError(f"refusing to write outside the output folder {root}")
    if output.resolve() == Path(item.source).resolve():
        raise PlanError("refusing to overwrite the input")
    return output


def encode_output(image: Image.Image, options: OutputOptions) -> bytes:
    """The file content of one rendered output, in ``options``'s format."""
    pil_format, params = save_params(options)
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **params)
    return buffer.getvalue()


def write_encoded(item: PlannedItem, data: bytes) -> Path:
    """Write one encoded output atomically, creating its folder; re-checks that the
    output stays inside ``item.output_root`` and is not the input. Without
    ``item.overwrite`` an existing output raises :class:`OutputExistsError`."""
    output = _check_output(item)
    output.parent.mkdir(parents=True, exist_ok=True)
    output = _check_output(item)  # mkdir may not follow a link created meanwhile
    try:
        return write_atomic(output, data, overwrite=item.overwrite)
    except FileExistsError as exc:
        raise OutputExistsError(errno.EEXIST, SKIP_EXISTS, str(output)) from exc
