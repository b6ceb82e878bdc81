#!/usr/bin/env python
"""Build ``studio-val``: validation people on backdrops no model trained on, in three framings.

The robustness set of issue 19. The val-split people of ccp-person, viton-person and
coco-person (the photos a model never trains on, by the mask folders' name hash) are cut out
with their masks and composited (``unetbg.data.composite``, 1 px feathered edge, no colour
pull) onto a fixed list of backdrops — white, black, red, blue, green, yellow, a gradient, a
texture and two photos without people from coco-person's val split — at three framings:
the whole person, half body and head and shoulders (cut by the frame). The result is a mask
folder marked ``VALIDATION_ONLY`` (every pair validates, none trains), so::

    .venv/bin/python scripts/build_studio_val.py /work/runs/studio-val
    unetbg evaluate default --data masks:/work/runs/studio-val --group-by backdrop

scores it. Deterministic: the same data gives the same files. Never point it at training
photos; the folder stays outside the repository (it holds the source sets' photos).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from unetbg.data.composite import (
    FRAMINGS,
    composite,
    fit_photo,
    gradient,
    person_box,
    solid,
    texture,
)
from unetbg.data.folders import VALIDATION_ONLY, MaskFolder

#: The fixed backdrops by name: a colour or a procedural kind (the photos are added later).
COLOURS = {
    "white": (250, 250, 250),
    "black": (8, 8, 8),
    "red": (196, 24, 32),
    "blue": (24, 56, 184),
    "green": (36, 150, 64),
    "yellow": (238, 206, 40),
}
WIDTH, HEIGHT = 360, 480


@dataclass(frozen=True)
class Person:
    source: str
    stem: str
    image: np.ndarray
    mask: np.ndarray


def backdrops(coco_person: Path) -> dict[str, np.ndarray]:
    """Every backdrop, ``HEIGHT×WIDTH×3``."""
    out = {name: solid(HEIGHT, WIDTH, rgb) for name, rgb in COLOURS.items()}
    out["gradient"] = gradient(HEIGHT, WIDTH, (235, 140, 40), (70, 30, 120), math.pi / 2)
    out["texture"] = texture(HEIGHT, WIDTH, np.random.default_rng(19))
    val = MaskFolder(coco_person, "val")
    empty = [i for i in range(len(val)) if not val.has_person(i)]
    if len(empty) < 2:
        sys.exit(f"{coco_person}: fewer than two val photos without people for backdrops")
    for n, i in enumerate(empty[:2], 1):
        out[f"photo{n}"] = fit_photo(val.load(i)[0], HEIGHT, WIDTH)
    return out


def framable(mask: np.ndarray, ignore: np.ndarray) -> bool:
    """Big enough for a head-and-shoulders crop, no crowd area, people in one compact box."""
    box = person_box(mask)
    if box is None or ignore.any():
        return False
    y0, y1, x0, x1 = box
    tall = y1 - y0 >= max(150, 0.45 * mask.shape[0])
    return tall and mask[y0:y1, x0:x1].mean() >= 0.25


def all_framings_show(image: np.ndarray, mask: np.ndarray) -> bool:
    """Does every framing keep a person in the frame (a photo without one would be scored
    as a photo without people, not as a person on a backdrop)?"""
    wall = solid(HEIGHT, WIDTH, (0, 0, 0))
    return all(composite(image, mask, wall, f)[1].any() for f in FRAMINGS.values())


def people(root: Path, source: str, count: int) -> list[Person]:
    """``count`` framable val people of ``root``, in a fixed order (by the hash of each name)."""
    folder = MaskFolder(root, "val")
    chosen: list[Person] = []
    order = sorted(
        range(len(folder)), key=lambda i: hashlib.sha256(folder.key(i).encode()).digest()
    )
    for i in order:
        image, mask, ignore = folder.load(i)
        if framable(mask, ignore) and all_framings_show(image, mask):
            chosen.append(Person(source, folder.key(i), image, mask))
            if len(chosen) == count:
                break
    if len(chosen) < count:
        print(f"{source}: only {len(chosen)} framable val people", file=sys.stderr)
    return chosen


def write(out: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    Image.fromarray(image).save(out / "images" / f"{name}.jpg", quality=95)
    Image.fromarray(mask * 255).save(out / "masks" / f"{name}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="new folder to write (must not exist)")
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--per-source", type=int, default=10, help="people per source")
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists: choose a new folder (nothing is overwritten)")
    data = args.shared
    everyone = [
        p
        for source in ("ccp-person", "viton-person", "coco-person")
        for p in people(data / source, source, args.per_source)
    ]
    walls = backdrops(data / "coco-person")
    for sub in ("images", "masks"):
        (args.out / sub).mkdir(parents=True)
    rows = ["name\tsource\tstem\tframing\tbackdrop"]
    for person in everyone:
        for framing_name, framing in FRAMINGS.items():
            for wall_name, wall in walls.items():
                image, mask = composite(person.image, person.mask, wall, framing, feather=1.0)
                name = f"{person.source}-{person.stem}-{framing_name}-{wall_name}"
                write(args.out, name, image, mask)
                rows.append(f"{name}\t{person.source}\t{person.stem}\t{framing_name}\t{wall_name}")
    (args.out / "manifest.tsv").write_text("\n".join(rows) + "\n")
    (args.out / VALIDATION_ONLY).write_text(
        "Built by scripts/build_studio_val.py from val-split photos only: never train on it.\n"
    )
    print(f"{args.out}: {len(rows) - 1} photos of {len(everyone)} people")
    return 0


if __name__ == "__main__":
    sys.exit(main())
