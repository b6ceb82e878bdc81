"""Print how much of each cut-out is opaque: a blank cut-out shows at once.

    python scripts/opacity.py CUTOUT.png [...]

Opaque = alpha >= 128 (what a hard threshold of 0.5 would keep); also the mean alpha.
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image


def main(paths: list[str]) -> None:
    shares = []
    for path in paths:
        with Image.open(path) as image:
            alpha = np.asarray(image.convert("RGBA"))[..., 3]
        share = float((alpha >= 128).mean())
        shares.append(share)
        print(f"{path}: {share:6.1%} opaque (mean alpha {alpha.mean() / 255:.2f})")
    if len(shares) > 1:
        print(f"{len(shares)} cut-outs, {np.mean(shares):.1%} opaque on average")


if __name__ == "__main__":
    main(sys.argv[1:])
