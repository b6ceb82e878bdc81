"""``unetbg coco``: check and describe a COCO 2017 dataset folder.

Thin printing layer over :mod:`unetbg.data.checks` and, for ``verify``,
:mod:`unetbg.preflight`; they are imported inside each command so ``unetbg coco --help``
stays fast.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

CROWD_CHOICES = ("ignore", "background", "skip")


def _common(func):
    """``--root`` and ``--split``, shared by every command."""
    func = click.option(
        "--split",
        type=click.Choice(["train", "val"]),
        default="val",
        show_default=True,
        help="Which COCO 2017 split: reads annotations/*_<split>2017.json and <split>2017/.",
    )(func)
    return click.option(
        "--root",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("COCO"),
        show_default=True,
        help="COCO folder holding annotations/ and train2017/ or val2017/.",
    )(func)


def _filter_options(func):
    """The person filter (see unetbg.data.PersonFilter)."""
    func = click.option(
        "--require-keypoints",
        is_flag=True,
        help="Count only persons with at least one labelled keypoint (needs person_keypoints_*.json).",
    )(func)
    func = click.option(
        "--crowd",
        type=click.Choice(CROWD_CHOICES),
        default="ignore",
        show_default=True,
        help="Crowd regions: ignore pixels, plain background, or skip images that have one.",
    )(func)
    return click.option(
        "--min-area",
        type=click.FloatRange(min=0),
        default=0.0,
        show_default=True,
        help="Smallest person area (COCO 'area', pixels) that counts as a valid person.",
    )(func)


def _make_filter(min_area: float, crowd: str, require_keypoints: bool):
    from unetbg.data.filters import PersonFilter

    return PersonFilter(min_area=min_area, crowd=crowd, require_keypoints=require_keypoints)


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> str:
    """Left-aligned columns (the last column is free text)."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)] + [r[-1]]
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


def _checks_table(checks) -> str:
    return _table([(c.status, c.name, c.detail) for c in checks])


def _load_error(exc: Exception) -> click.ClickException:
    return click.ClickException(f"{exc}\nRun `unetbg coco quick` to see what is missing.")


@click.group()
def coco() -> None:
    """Check and describe a COCO 2017 dataset folder (person masks).

    The expected layout is the official one: ROOT/annotations/person_keypoints_SPLIT2017.json
    (or instances_SPLIT2017.json) and ROOT/SPLIT2017/*.jpg.
    """


@coco.command()
@_common
def quick(root: Path, split: str) -> None:
    """Check folders and files only; print download commands for anything missing.

    Exits with status 1 when something is missing.
    """
    from unetbg.data.checks import quick as run_quick

    report = run_quick(root, split)
    click.echo(f"COCO {split}2017 at {root}")
    click.echo(_checks_table(report.checks))
    if report.ok:
        click.echo("OK: structure complete. Next: unetbg coco verify" + _args(root, split))
        return
    click.echo("\nMissing:")
    for item in report.missing:
        click.echo(f"  - {item}")
    click.echo("\nDownload with:")
    for line in report.commands:
        click.echo(f"  {line}")
    sys.exit(1)


def _args(root: Path, split: str) -> str:
    return f" --root {root} --split {split}"


@coco.command()
@_common
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="How many images to decode.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Images in the test batch.",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=32),
    default=128,
    show_default=True,
    help="Square network input size for the test batch (letterbox).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Device for the model forward pass; auto picks CUDA when available.",
)
def verify(
    root: Path, split: str, sample: int, batch_size: int, image_size: int, device: str
) -> None:
    """Load annotations, decode a sample, run a batch through the DataLoader and the model.

    Prints PASS/FAIL per check and exits with status 1 when any check fails.
    """
    from unetbg.preflight import verify as run_verify

    report = run_verify(
        root,
        split,
        sample=sample,
        batch_size=batch_size,
        image_size=image_size,
        device=device,
        progress=sys.stderr.isatty(),
    )
    click.echo(f"COCO {split}2017 at {root}")
    click.echo(_checks_table(report.checks))
    click.echo(f"Device used: {report.device or 'none'}")
    if not report.ok:
        failed = ", ".join(c.name for c in report.checks if c.status == "FAIL")
        click.echo(f"FAILED: {failed}")
        sys.exit(1)
    click.echo("All checks passed.")


@coco.command()
@_common
@_filter_options
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def analyze(
    root: Path, split: str, min_area: float, crowd: str, require_keypoints: bool, as_json: bool
) -> None:
    """Count images and person annotations; describe person and image sizes.

    Reads the annotation file only (no image decoding). Person areas use COCO's
    small/medium/large thresholds (32² and 96² pixels).
    """
    from unetbg.data.checks import analyze as run_analyze
    from unetbg.data.coco import CocoError

    try:
        report = run_analyze(root, split, _make_filter(min_area, crowd, require_keypoints))
    except CocoError as exc:
        raise _load_error(exc) from exc
    if as_json:
        click.echo(json.dumps(_json_safe(report.to_dict()), indent=2))
        return
    r = report
    pa, sizes = r.person_area, r.image_sizes
    rows = [
        ("annotation file", r.annotation_file),
        ("filter", ", ".join(f"{k}={v}" for k, v in r.filter.items())),
        ("images listed", f"{r.images_total}"),
        (
            "images on disk",
            f"{r.images_on_disk} ({r.images_missing} missing, {r.files_unlisted} unlisted files)",
        ),
        ("person annotations", f"{r.person_annotations}"),
        ("  crowd", f"{r.crowd_annotations}"),
        ("  valid", f"{r.valid_person_annotations}"),
        ("  ignored (not valid)", f"{r.ignored_person_annotations}"),
        ("images with valid persons", f"{r.images_with_valid_persons}"),
        ("images without persons", f"{r.images_without_persons}"),
        (
            "persons per image",
            f"{r.avg_persons_per_image:.2f} (all), {r.avg_persons_per_person_image:.2f} (with persons)",
        ),
        ("person area small/medium/large", f"{pa['small']} / {pa['medium']} / {pa['large']}"),
        ("person area px", _pct(pa["pixels"], "{:.0f}")),
        ("person area / image", _pct(pa["fraction_of_image"], "{:.2%}")),
        (
            "image width",
            f"min {sizes['width']['min']:.0f}, median {sizes['width']['median']:.0f}, max {sizes['width']['max']:.0f}",
        ),
        (
            "image height",
            f"min {sizes['height']['min']:.0f}, median {sizes['height']['median']:.0f}, max {sizes['height']['max']:.0f}",
        ),
        ("megapixels", _pct(sizes["megapixels"], "{:.2f}")),
        (
            "orientation",
            f"{sizes['landscape']} landscape, {sizes['portrait']} portrait, {sizes['square']} square",
        ),
        ("most common sizes", ", ".join(f"{w}x{h} ({n})" for w, h, n in sizes["most_common"])),
    ]
    click.echo(f"COCO {split}2017 at {root}")
    click.echo(_table(rows))


def _pct(p: dict[str, float], fmt: str) -> str:
    return "  ".join(f"{k} {fmt.format(v)}" for k, v in p.items())


def _json_safe(value):
    """NaN (empty distributions) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


@coco.command()
@_common
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Images in the batch.",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=32),
    default=256,
    show_default=True,
    help="Square output size.",
)
@click.option(
    "--augment/--no-augment",
    default=False,
    show_default=True,
    help="Use the training augmentations (TrainPreset) instead of the evaluation letterbox.",
)
@click.option(
    "--num-workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="DataLoader worker processes (0 loads in this process).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for shuffling and augmentations."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def batch(
    root: Path,
    split: str,
    batch_size: int,
    image_size: int,
    augment: bool,
    num_workers: int,
    seed: int,
    as_json: bool,
) -> None:
    """Load one batch through the dataset and DataLoader; print shapes, ranges and timing."""
    from unetbg.data.checks import batch as run_batch
    from unetbg.data.coco import CocoError

    try:
        r = run_batch(
            root,
            split,
            batch_size=batch_size,
            image_size=image_size,
            augment=augment,
            num_workers=num_workers,
            seed=seed,
        )
    except (CocoError, ValueError) as exc:
        raise _load_error(exc) from exc
    if as_json:
        click.echo(json.dumps(_json_safe(r.to_dict()), indent=2))
        return
    click.echo(f"COCO {split}2017 at {root}: {r.preset}")
    rows = [("tensor", "shape", "dtype", "min", "max", "mean")]
    for t in r.tensors:
        rows.append(
            (
                t.name,
                "×".join(map(str, t.shape)),
                t.dtype,
                f"{t.min:.3f}",
                f"{t.max:.3f}",
                f"{t.mean:.3f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    for row in rows:
        click.echo(
            "  "
            + "  ".join(
                c.rjust(w) if i >= 3 else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    summary = [
        ("image ids", ", ".join(map(str, r.image_ids))),
        ("foreground", f"{100 * r.foreground_fraction:.1f}% of pixels"),
        ("ignore", f"{100 * r.ignore_fraction:.1f}% of pixels (crowd, rejected persons, padding)"),
        (
            "time",
            f"{r.seconds:.3f} s for {len(r.image_ids)} images ({1000 * r.seconds_per_image:.1f} ms/image)",
        ),
    ]
    if r.unreadable:
        summary.append(("unreadable", "; ".join(f"{k}: {v}" for k, v in r.unreadable.items())))
    click.echo(_table(summary))
