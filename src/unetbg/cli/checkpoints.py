"""``unetbg checkpoints``: the registered checkpoints (``--checkpoint best`` picks one)."""

from __future__ import annotations

import json

import click

from unetbg.cli._render import checkpoint_table
from unetbg.cli._service import LIST_EXIT_HELP, service_errors


@click.command(epilog=LIST_EXIT_HELP)
@click.option("--job", "job_id", default=None, help="Only this training job's checkpoints.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def checkpoints(job_id: str | None, as_json: bool) -> None:
    """List registered checkpoints (`--checkpoint best` picks the best val IoU)."""
    from unetbg import jobs

    rows = service_errors(lambda: jobs.list_checkpoints(job_id))
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in rows], indent=2))
    elif rows:
        click.echo(checkpoint_table(rows))
    else:
        click.echo(
            "no checkpoints registered (train one: `unetbg submit-train --preset smoke --coco-root DIR`)"
        )
