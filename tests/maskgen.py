"""Generated mask folders (images/ + masks/ + ignore/) written as real JPEG/PNG files.

Each photo is noise with one bright ellipse "person" whose mask is drawn exactly; every
third photo has no person (a true negative), every fourth an ignore region.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_mask_folder(
    root: str | Path, count: int = 12, size: tuple[int, int] = (80, 60), seed: int = 0
) -> Path:
    root = Path(root)
    for sub in ("images", "masks", "ignore"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[:h, :w]
    for i in range(count):
        image = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        if i % 3:
            cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
            inside = ((xx - cx) / (w / 6)) ** 2 + ((yy - cy) / (h / 3)) ** 2 <= 1
            mask[inside] = 255
            image[inside] = (230, 190, 160)
        name = f"img{i:03d}"
        Image.fromarray(image).save(root / "images" / f"{name}.jpg", quality=95)
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
        if i % 4 == 0:
            ignore = np.zeros((h, w), np.uint8)
            ignore[: h // 4, : w // 4] = 255
            Image.fromarray(ignore).save(root / "ignore" / f"{name}.png")
    return root
