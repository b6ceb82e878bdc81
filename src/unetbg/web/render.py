"""Pictures the web page shows next to a result: the mask over the photo, the
cut-out over a checkerboard, and downscaled previews.

Pure numpy/PIL (no Streamlit, no torch) so it is tested without a browser. The
downloadable result itself is made by :mod:`unetbg.removal`, at the original size;
these helpers only make what is displayed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: Longest side of a displayed preview. Sending a 24-megapixel PNG to the browser
#: three times per image would make the page crawl; the download keeps full size.
PREVIEW_MAX_SIDE = 1024

#: Tint for the person region in the overlay (magenta stands out on skin and sky).
OVERLAY_COLOR = (255, 0, 150)


def preview(image: Image.Image, max_side: int = PREVIEW_MAX_SIDE) -> Image.Image:
    """``image`` scaled down (never up) so its longest side is at most ``max_side``."""
    if max(image.size) <= max_side:
        return image
    out = image.copy()
    out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return out


def checkerboard(height: int, width: int, cell: int = 16) -> np.ndarray:
    """An ``H×W×3`` uint8 light-grey checkerboard (the usual "transparent" backdrop)."""
    ys = (np.arange(height) // cell)[:, None]
    xs = (np.arange(width) // cell)[None, :]
    board = np.where((ys + xs) % 2 == 0, 255, 204).astype(np.uint8)
    return np.repeat(board[:, :, None], 3, axis=2)


def on_checkerboard(image: Image.Image) -> Image.Image:
    """Flatten ``image`` onto a checkerboard so its transparency is visible.

    Images without an alpha channel (mask only, solid colour, background) are
    returned as RGB unchanged: there is nothing to show through.
    """
    if image.mode not in ("RGBA", "LA"):
        return image.convert("RGB")
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
    alpha = rgba[:, :, 3:4] / 255.0
    board = checkerboard(rgba.shape[0], rgba.shape[1]).astype(np.float32)
    out = rgba[:, :, :3] * alpha + board * (1.0 - alpha)
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")


def overlay(
    rgb: np.ndarray,
    probability: np.ndarray,
    color: tuple[int, int, int] = OVERLAY_COLOR,
    strength: float = 0.55,
) -> Image.Image:
    """The photo with the person probability tinted in ``color``.

    The tint is proportional to the probability, so soft edges stay visible as
    soft; ``strength`` is the tint's opacity where the probability is 1.
    """
    if rgb.shape[:2] != probability.shape:
        raise ValueError(
            f"mask shape {probability.shape} does not match image shape {rgb.shape[:2]}"
        )
    weight = np.clip(probability.astype(np.float32), 0.0, 1.0)[:, :, None] * strength
    tint = np.asarray(color, dtype=np.float32)[None, None, :]
    out = rgb.astype(np.float32) * (1.0 - weight) + tint * weight
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")
