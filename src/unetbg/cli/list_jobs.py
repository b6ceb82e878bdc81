"""``unetbg jobs``: recent jobs, newest first."""

from __future__ import annotations

import json

import click

from unetbg.cli._render import job_table
from unetbg.cli._service import LIST_EXIT_HELP, service_errors


@click.command("jobs", epilog=LIST_EXIT_HELP)
@click.option(
    "--state",
    type=click.Choice(("queued", "running", "succeeded", "failed", "cancelled", "partial")),
    default=None,
    help="Only jobs in this state.",
)
@click.option(
    "--kind",
    type=click.Choice(("train", "remove_dir", "evaluate")),
    default=None,
    help="Only jobs of this kind.",
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_jobs(state: str | None, kind: str | None, limit: int, as_json: bool) -> None:
    """List recent jobs, newest first.

    NOTE is the first line of a job's error, shortened between words; `unetbg status
    JOB` prints it whole.
    """
    from unetbg import jobs

    def load():
        jobs.mark_lost_jobs()
        return jobs.list_jobs(state=state, kind=kind, limit=limit)

    rows = service_errors(load)
    if as_json:
        click.echo(json.dumps([j.to_dict() for j in rows], indent=2))
        return
    if not rows:
        click.echo("no jobs")
        return
    click.echo(job_table(rows))
