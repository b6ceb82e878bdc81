"""Edge refinement: a resized mask's outline moved onto the photo's own edges.

The network sees a photo at its checkpoint's ``image_size`` (192 px for the shipped
model) and the probability map is resized back to the photo's size, so an outline is
only as sharp as one network pixel, which is several of the photo's. A guided filter
(He, Sun and Tang, "Guided image filtering", 2013) fits the probability, in each window
around a pixel, as a linear function of the photo's brightness: across an edge of the
photo the fitted probability steps with the edge; where the photo is flat it stays as
smooth as it was. ``eps`` sets how much contrast counts as an edge.

The window's radius is given in network pixels, so its size in the photo grows with the
photo, as the outline's uncertainty does. Every step is a box filter or a pixel-wise
operation (OpenCV's, which release the GIL), so the cost follows the photo's pixel
count alone: docs/performance.md measures it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from unetbg.model.config import Preprocessing


def photo_radius(height: int, width: int, preprocessing: Preprocessing) -> int:
    """The filter's radius in the pixels of a ``height×width`` photo: ``edge_radius``
    network pixels at the scale the photo is letterboxed with (at least 1)."""
    scale = max(height, width) / preprocessing.image_size
    return max(1, round(preprocessing.edge_radius * scale))


def refine_probability(
    probability: np.ndarray, rgb: np.ndarray, preprocessing: Preprocessing
) -> np.ndarray:
    """``H×W`` person probability of the ``H×W×3`` uint8 photo ``rgb`` -> a new ``H×W``
    float32 probability in [0, 1] whose edges follow the photo's: a guided filter with
    the photo's brightness as guide, radius :func:`photo_radius`, regularisation
    ``preprocessing.edge_eps``. Neither input is modified."""
    if probability.shape != rgb.shape[:2]:
        raise ValueError(
            f"the probability map is {probability.shape[1]}×{probability.shape[0]} but "
            f"the photo is {rgb.shape[1]}×{rgb.shape[0]}"
        )
    guide = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    guide *= 1.0 / 255.0
    src = np.asarray(probability, dtype=np.float32)
    size = 2 * photo_radius(*src.shape, preprocessing) + 1
    eps = preprocessing.edge_eps

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, (size, size), borderType=cv2.BORDER_REPLICATE)

    mean_i, mean_p = box(guide), box(src)
    # Least squares in each window: src ≈ a·guide + b, eps keeping a small where the
    # photo is flat; each pixel then takes the mean a and b of the windows it lies in.
    a = (box(guide * src) - mean_i * mean_p) / (box(guide * guide) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    refined = box(a) * guide + box(b)
    return np.clip(refined, 0.0, 1.0, out=refined)


def alpha_curve(probability: np.ndarray, low: float, high: float) -> np.ndarray:
    """``probability`` with everything up to ``low`` at 0, from ``high`` at 1 and a
    straight line between: a new float32 array (the input is not modified)."""
    out = (np.asarray(probability, dtype=np.float32) - np.float32(low)) * np.float32(
        1.0 / (high - low)
    )
    return np.clip(out, 0.0, 1.0, out=out)


def refine_all(
    probabilities: Sequence[np.ndarray], images: Sequence[np.ndarray], preprocessing: Preprocessing
) -> list[np.ndarray]:
    """Each of ``probabilities`` made final: refined by its photo in ``images`` when
    ``preprocessing.refine_edges`` says so, then put through the alpha curve when
    ``preprocessing.alpha_curve`` says so (:meth:`Preprocessing.curve_points`); otherwise
    the same arrays."""
    probs = list(probabilities)
    if preprocessing.refine_edges:
        probs = [
            refine_probability(p, image, preprocessing)
            for p, image in zip(probs, images, strict=True)
        ]
    points = preprocessing.curve_points()
    if points is not None:
        probs = [alpha_curve(p, *points) for p in probs]
    return probs
