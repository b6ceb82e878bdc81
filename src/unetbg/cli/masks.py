"""``unetbg masks check DIR``: check a mask folder (images/ + masks/ [+ ignore/])."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.group()
def masks() -> None:
    """Check person data in the mask-folder layout.

    A mask folder holds images/NAME.jpg (any format Pillow reads), masks/NAME.png of the
    same size (8-bit, >= 128 is person) and optionally ignore/NAME.png (>= 128 and not
    person: neither trained nor scored, like COCO crowd regions). Train on one with
    `unetbg train --data masks:DIR[:WEIGHT]`.
    """


@masks.command()
@click.argument("root", type=click.Path(path_type=Path))
@click.option(
    "--val-percent",
    type=click.IntRange(0, 100),
    default=10,
    show_default=True,
    help="Share of names (by hash) that training keeps for validation.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def check(root: Path, val_percent: int, as_json: bool) -> None:
    """Decode every image and mask of ROOT and report what is wrong.

    Fails (exit 1) on images without masks, masks without images, files that repeat a
    name, unreadable files, masks of another size than their photo and full masks.
    Empty masks (photos without people) are counted, not failed.
    """
    from unetbg.cli._render import table
    from unetbg.data.folder_checks import check_mask_folder

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() and (done % 100 == 0 or done == total):
            click.echo(f"\rchecked {done}/{total}", err=True, nl=done == total)

    report = check_mask_folder(root, val_percent, progress)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(f"mask folder {root}")
        click.echo(
            table(
                ["status", "check", "detail"], [(c.status, c.name, c.detail) for c in report.checks]
            )
        )
    if not report.ok:
        if not as_json:
            failed = ", ".join(c.name for c in report.checks if not c.ok)
            click.echo(f"FAILED: {failed}")
        sys.exit(1)
    if not as_json:
        click.echo("All checks passed.")
