"""Mask folders: ``images/`` + ``masks/`` (+ optional ``ignore/``) with matching file stems.

The layout of ``coco-person`` and ``ccp-person`` and of most person data sets outside COCO::

    ROOT/images/NAME.jpg    the photo (any format Pillow reads)
    ROOT/masks/NAME.png     same width and height, 8-bit: >= 128 is person (soft masks too)
    ROOT/ignore/NAME.png    optional, same size: >= 128 and not person -> "don't score,
                            don't train" (COCO's crowd regions, as in coco-mini)

A folder with a ``VALIDATION_ONLY`` file at its root is validation data only: every pair
is in ``val``, none in ``train``. Any other folder is split deterministically by a hash of each file stem (:func:`split_of`): about
``val_percent`` % of the names go to ``val``, the rest to ``train``. The split depends on the
name alone, so it stays fixed when files are added or the folder is copied elsewhere, and a
validation photo can never reach training.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unetbg.data.coco import UnreadableImageError, read_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "all")
#: A folder holding a file of this name is validation only: all of its pairs are its
#: ``val`` split and none trains (``studio-val``, built from other sets' val photos).
VALIDATION_ONLY = "VALIDATION_ONLY"
#: A mask pixel at or above this 8-bit value is person (a soft mask is cut at one half).
MASK_THRESHOLD = 128


class MaskFolderError(Exception):
    """The folder does not have the mask-folder layout (no images/ or masks/, no pairs)."""


class MaskSizeError(UnreadableImageError):
    """A mask (or ignore mask) whose size differs from its photo's."""


def split_of(stem: str, val_percent: int) -> str:
    """``"val"`` for about ``val_percent`` % of stems, ``"train"`` for the rest, by name hash."""
    bucket = int.from_bytes(hashlib.sha256(stem.encode("utf-8")).digest()[:4], "big") % 100
    return "val" if bucket < val_percent else "train"


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> tuple[dict[str, Path], list[Path]]:
    """Files of ``folder`` with a known suffix by stem, and the duplicates of a stem."""
    found: dict[str, Path] = {}
    duplicates: list[Path] = []
    if not folder.is_dir():
        return found, duplicates
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in suffixes:
            continue
        if path.stem in found:
            duplicates.append(path)
        else:
            found[path.stem] = path
    return found, duplicates


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit mask file as ``H×W`` uint8 in {0, 1} (>= 128 -> 1).

    RGB(A) and 16-bit masks are converted to 8-bit gray first. Raises
    :class:`UnreadableImageError` for a missing or undecodable file.
    """
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(img, dtype=np.float64) / 257.0
            else:
                array = np.asarray(img.convert("L"))
    except FileNotFoundError as exc:
        raise UnreadableImageError("mask file not found") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImageError(f"cannot decode mask: {exc}") from exc
    return (array >= MASK_THRESHOLD).astype(np.uint8)


@dataclass
class MaskFolder:
    """The image/mask pairs of one split of a mask folder, in sorted stem order.

    ``missing_masks`` lists images without a mask and ``extra_masks`` masks without an
    image (both left out of ``stems``); ``duplicates`` files whose stem another file of the
    same folder already has (``a.jpg`` and ``a.png``: the first in sorted order is used).
    """

    root: Path
    split: str = "all"
    val_percent: int = 10
    #: Shown in logs and per-source figures; the folder's name by default.
    name: str = ""
    stems: list[str] = field(init=False)
    images: dict[str, Path] = field(init=False)
    masks_by_stem: dict[str, Path] = field(init=False)
    ignores: dict[str, Path] = field(init=False)
    missing_masks: list[str] = field(init=False)
    extra_masks: list[str] = field(init=False)
    duplicates: list[Path] = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.name = self.name or self.root.resolve().name
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if not 0 <= self.val_percent <= 100:
            raise ValueError(f"val_percent must be in [0, 100], got {self.val_percent}")
        for sub in ("images", "masks"):
            if not (self.root / sub).is_dir():
                raise MaskFolderError(
                    f"{self.root} is not a mask folder: {sub}/ is missing "
                    "(expected images/ + masks/ with matching file names, optional ignore/)"
                )
        self.images, dup_images = _by_stem(self.root / "images", IMAGE_SUFFIXES)
        self.masks_by_stem, dup_masks = _by_stem(self.root / "masks", MASK_SUFFIXES)
        self.ignores, dup_ignores = _by_stem(self.root / "ignore", MASK_SUFFIXES)
        self.duplicates = dup_images + dup_masks + dup_ignores
        self.missing_masks = sorted(set(self.images) - set(self.masks_by_stem))
        self.extra_masks = sorted(set(self.masks_by_stem) - set(self.images))
        paired = sorted(set(self.images) & set(self.masks_by_stem))
        if (self.root / VALIDATION_ONLY).is_file():
            self.stems = [] if self.split == "train" else paired
            return
        self.stems = [
            s for s in paired if self.split == "all" or split_of(s, self.val_percent) == self.split
        ]

    def __len__(self) -> int:
        return len(self.stems)

    def read_image(self, stem: str) -> np.ndarray:
        """``H×W×3`` uint8 RGB on the stored pixel grid (masks are drawn on it, no EXIF turn)."""
        return read_rgb(self.images[stem])

    def masks(self, stem: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``(mask, ignore)`` of ``stem``, each ``H×W`` uint8 in {0, 1}.

        ``shape`` is the decoded image's ``(H, W)``; a mask of another size raises
        :class:`UnreadableImageError` (resizing would silently shift every label).
        """
        mask = read_mask(self.masks_by_stem[stem])
        _check_size("mask", mask.shape, shape)
        ignore = np.zeros(shape, np.uint8)
        if stem in self.ignores:
            ignore = read_mask(self.ignores[stem])
            _check_size("ignore mask", ignore.shape, shape)
            ignore &= 1 - mask  # a labelled person pixel is never ignored
        return mask, ignore

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image, mask, ignore)`` of the ``index``-th pair."""
        stem = self.stems[index]
        image = self.read_image(stem)
        mask, ignore = self.masks(stem, image.shape[:2])
        return image, mask, ignore

    def key(self, index: int) -> str:
        return self.stems[index]

    def has_person(self, index: int) -> bool:
        """Does the mask hold any person pixel? Reads the mask only; an unreadable one
        counts as a person, and so does one with an ignore map (crowd regions are
        people), so neither is ever drawn as a photo without people."""
        stem = self.stems[index]
        if stem in self.ignores:
            return True
        try:
            return bool(read_mask(self.masks_by_stem[stem]).any())
        except UnreadableImageError:
            return True


def _check_size(what: str, got: tuple[int, ...], expected: tuple[int, ...]) -> None:
    if tuple(got) != tuple(expected):
        raise MaskSizeError(
            f"{what} is {got[1]}x{got[0]} but the image is {expected[1]}x{expected[0]}"
        )
