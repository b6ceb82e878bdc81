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
    """List registered checkpoints (`--checkpoint best` picks the best val IoU) and the
    default model that ships with unetbg (`--checkpoint default`; `best` while none is
    registered)."""
    from unetbg import jobs
    from unetbg.weights import default_checkpoint

    if as_json:  # the same list as the HTTP API's GET /api/checkpoints
        entries = service_errors(lambda: jobs.checkpoint_documents(job_id))
        click.echo(json.dumps(entries, indent=2))
        return
    rows = service_errors(lambda: jobs.list_checkpoints(job_id))
    shipped = default_checkpoint() if job_id is None else None
    if shipped is not None and not shipped.is_file():
        shipped = None
    if rows:
        click.echo(checkpoint_table(rows))
    else:
        click.echo(
            "no checkpoints registered (train one: `unetbg submit-train --preset smoke --coco-root DIR`)"
        )
    if shipped is not None:
        role = "used by 'best' while none is registered" if not rows else "--checkpoint default"
        size = shipped.stat().st_size / 2**20
        click.echo(f"default model ({role}): {shipped} ({size:.1f} MiB)")
