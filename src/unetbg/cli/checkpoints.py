"""``unetbg checkpoints``: the registered checkpoints, which one ``--checkpoint best``
runs and why, and ``checkpoints remove`` to forget one."""

from __future__ import annotations

import json

import click

from unetbg.cli._render import checkpoint_table
from unetbg.cli._service import LIST_EXIT_HELP, service_errors


@click.group(invoke_without_command=True, epilog=LIST_EXIT_HELP)
@click.option("--job", "job_id", default=None, help="Only this training job's checkpoints.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def checkpoints(ctx: click.Context, job_id: str | None, as_json: bool) -> None:
    """List registered checkpoints and the default model that ships with unetbg, and say
    which one `--checkpoint best` runs: a registered checkpoint only where its recorded
    validation IoU beats the default model's on the validation sets both were scored on
    (the default's figures are on its card, docs/model-card.md), else the default.
    `unetbg checkpoints remove ID` forgets one."""
    if ctx.invoked_subcommand is not None:
        return
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
        size = shipped.stat().st_size / 2**20
        click.echo(f"default model (--checkpoint default): {shipped} ({size:.1f} MiB)")
    if job_id is None:
        try:
            choice = jobs.choose_checkpoint("best")
        except jobs.NoCheckpointError as exc:
            click.echo(f"best: none ({exc})")
            return
        for note in choice.notes():
            click.echo(f"best: {note}")


@checkpoints.command(epilog="\b\nExit status: 0 forgotten, 2 no such registered checkpoint.")
@click.argument("checkpoint_id", metavar="ID", type=int)
@click.option(
    "--delete-file", is_flag=True, help="Also delete the checkpoint's file (kept by default)."
)
def remove(checkpoint_id: int, delete_file: bool) -> None:
    """Forget registered checkpoint ID (`unetbg checkpoints` lists them), so `best` no
    longer considers it. Its file stays where it is unless --delete-file."""
    from unetbg import jobs

    view = service_errors(lambda: jobs.unregister_checkpoint(checkpoint_id, delete_file))
    what = "file deleted" if delete_file else "file kept"
    click.echo(f"forgot checkpoint {view.id}: {view.path} ({what})")
