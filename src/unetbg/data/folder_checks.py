"""Checks of a mask folder, like the COCO ones: ``unetbg masks check DIR [--json]``.

Every image and mask is decoded once: what cannot be read, masks of another size than
their photo, images without a mask and masks without an image, empty masks (photos
without people: fine, and worth knowing how many) and full masks (every pixel person:
almost always an inverted or placeholder mask).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from unetbg.data.checks import FAIL, PASS, SKIP, Check
from unetbg.data.coco import UnreadableImageError
from unetbg.data.folders import MaskFolder, MaskFolderError, MaskSizeError, split_of

#: How many names a check's detail lists before "and N more".
SHOWN = 5


@dataclass
class MaskFolderReport:
    """What :func:`check_mask_folder` found; ``to_dict()`` is the ``--json`` output."""

    root: str
    checks: list[Check]
    pairs: int = 0
    train: int = 0
    val: int = 0
    missing_masks: list[str] = field(default_factory=list)
    extra_masks: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    size_mismatches: dict[str, str] = field(default_factory=dict)
    empty_masks: list[str] = field(default_factory=list)
    full_masks: list[str] = field(default_factory=list)
    #: Mean share of person pixels over the readable pairs.
    person_share: float | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def check_mask_folder(
    root: str | os.PathLike,
    val_percent: int = 10,
    progress: Callable[[int, int], None] | None = None,
) -> MaskFolderReport:
    """Check the mask folder at ``root``; ``progress(done, total)`` after each pair."""
    report = MaskFolderReport(str(root), [])
    try:
        folder = MaskFolder(Path(root), "all", val_percent)
    except MaskFolderError as exc:
        report.checks.append(Check("structure", FAIL, str(exc)))
        for name in ("pairs", "decode", "masks"):
            report.checks.append(Check(name, SKIP, "no mask folder"))
        return report
    has_ignore = (folder.root / "ignore").is_dir()
    report.checks.append(
        Check(
            "structure",
            PASS,
            "images/ and masks/" + (" and ignore/" if has_ignore else " (no ignore/)"),
        )
    )
    report.checks.append(_pairs_check(report, folder, val_percent))
    shares = _read_pairs(report, folder, progress)
    report.checks.append(_decode_check(report))
    if shares:
        report.person_share = sum(shares) / len(shares)
    report.checks.append(_masks_check(report, shares))
    return report


def _pairs_check(report: MaskFolderReport, folder: MaskFolder, val_percent: int) -> Check:
    """Count the pairs and the split; name what has no partner or repeats a name."""
    report.pairs = len(folder)
    report.val = sum(split_of(s, val_percent) == "val" for s in folder.stems)
    report.train = report.pairs - report.val
    report.missing_masks, report.extra_masks = folder.missing_masks, folder.extra_masks
    report.duplicates = [str(p.relative_to(folder.root)) for p in folder.duplicates]
    problems = []
    if folder.missing_masks:
        problems.append(f"{len(folder.missing_masks)} image(s) without a mask: ")
        problems[-1] += _names(folder.missing_masks)
    if folder.extra_masks:
        problems.append(f"{len(folder.extra_masks)} mask(s) without an image: ")
        problems[-1] += _names(folder.extra_masks)
    if report.duplicates:
        problems.append(f"{len(report.duplicates)} file(s) repeat a name: ")
        problems[-1] += _names(report.duplicates)
    extra_ignores = sorted(set(folder.ignores) - set(folder.images))
    if extra_ignores:
        problems.append(f"{len(extra_ignores)} ignore mask(s) without an image: ")
        problems[-1] += _names(extra_ignores)
    if not folder.stems:
        problems.append("no image has a mask with the same name")
    return Check(
        "pairs",
        FAIL if problems else PASS,
        "; ".join(problems)
        or f"{report.pairs} pairs ({report.train} train, {report.val} val at {val_percent}%)",
    )


def _read_pairs(
    report: MaskFolderReport, folder: MaskFolder, progress: Callable[[int, int], None] | None
) -> list[float]:
    """Decode every pair once; the person share of each readable one, in order. What
    cannot be read or has another size goes into the report instead."""
    shares = []
    for done, stem in enumerate(folder.stems, 1):
        try:
            image = folder.read_image(stem)
        except UnreadableImageError as exc:
            report.unreadable[stem] = f"image: {exc}"
            continue
        try:
            mask, _ = folder.masks(stem, image.shape[:2])
        except MaskSizeError as exc:
            report.size_mismatches[stem] = str(exc)
            continue
        except UnreadableImageError as exc:
            report.unreadable[stem] = str(exc)
            continue
        share = float(mask.mean())
        shares.append(share)
        if share == 0:
            report.empty_masks.append(stem)
        elif share == 1:
            report.full_masks.append(stem)
        if progress is not None:
            progress(done, len(folder.stems))
    return shares


def _decode_check(report: MaskFolderReport) -> Check:
    bad = [f"{n}: {why}" for n, why in {**report.unreadable, **report.size_mismatches}.items()]
    return Check(
        "decode",
        FAIL if bad else PASS,
        (f"{len(bad)} of {report.pairs} pair(s) unusable: " + _names(bad))
        if bad
        else f"{report.pairs} images and masks decode, sizes match",
    )


def _masks_check(report: MaskFolderReport, shares: list[float]) -> Check:
    """Full masks fail (almost always inverted); so does a folder with only empty ones."""
    mask_problems = []
    if report.full_masks:
        mask_problems.append(
            f"{len(report.full_masks)} full mask(s) (every pixel person: inverted?): "
            + _names(report.full_masks)
        )
    if shares and len(report.empty_masks) == len(shares):
        mask_problems.append("every mask is empty: no person pixel anywhere")
    return Check(
        "masks",
        FAIL if mask_problems else (PASS if shares else SKIP),
        "; ".join(mask_problems)
        or (
            f"{len(report.empty_masks)} empty (photos without people), mean person "
            f"share {report.person_share:.1%}"
            if shares
            else "nothing readable"
        ),
    )
