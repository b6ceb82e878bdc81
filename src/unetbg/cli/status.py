"""``unetbg status JOB``: one job, its figures, checkpoints and (``--items``) its images."""

from __future__ import annotations

import json
import sys

import click

from unetbg.cli._render import (
    checkpoint_table,
    describe,
    epoch_table,
    item_table,
    no_person_line,
    result_lines,
)
from unetbg.cli._service import EXIT_HELP, EXIT_OK, exit_code, service_errors


@click.command(epilog=EXIT_HELP)
@click.argument("job_id")
@click.option(
    "--items",
    "items",
    type=click.Choice(("failed", "no-person", "all")),
    default=None,
    help="Also list the job's images: only the failed ones, only those whose output "
    "shows no person (under 0.1 % of the photo), or all (a no-person image is marked).",
)
@click.option(
    "--wait",
    is_flag=True,
    help="First follow the job until it ends, with the progress display of a submitting "
    "--wait (Ctrl-C stops watching; the job goes on); then show it, and exit as --wait does.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(job_id: str, items: str | None, wait: bool, as_json: bool) -> None:
    """Show one job (any unique prefix of its id, 2 characters or more, is enough).

    A training job shows its step inside the epoch. Notes on why a job waits (no worker
    consumes its queue; images unclaimed past the visibility window, their messages
    probably lost: `unetbg retry JOB`) go to stderr, and to "hints" under --json.
    With --wait, a job that is still queued or running is followed to its end first
    (`unetbg wait JOB...` does that for several jobs).
    """
    from unetbg import jobs

    if wait:
        from unetbg.cli._follow import follow

        job_id = service_errors(lambda: jobs.get_job(job_id)).id
        if follow(job_id, None) is None:  # Ctrl-C: the job goes on, not waited for
            sys.exit(EXIT_OK)

    def load():
        jobs.mark_lost_jobs()
        job = jobs.get_job(job_id)
        listed = []
        if items:
            listed = jobs.chosen_items(job.id, items)
        epochs = jobs.list_epoch_metrics(job.id) if job.kind == "train" else []
        checkpoints = jobs.list_checkpoints(job.id) if job.kind == "train" else []
        return job, listed, epochs, checkpoints

    if as_json:  # the same document as the HTTP API's GET /api/jobs/{id}
        out = service_errors(lambda: jobs.job_document(job_id, items))
        for hint in out["hints"]:  # on stderr too: stdout stays one JSON document
            click.echo(f"note: {hint}", err=True)
        click.echo(json.dumps(out, indent=2))
        sys.exit(exit_code(out["state"]))
    job, listed, epochs, checkpoints = service_errors(load)
    for hint in jobs.waiting_hints(job):  # on stderr: stdout stays the record
        click.echo(f"note: {hint}", err=True)
    click.echo(describe(job))
    for line in result_lines(job):
        click.echo(line)
    if note := no_person_line(job):
        click.echo(note)
    if epochs:
        click.echo("\nepochs:")
        click.echo(epoch_table(epochs))
    if checkpoints:
        click.echo("\ncheckpoints:")
        click.echo(checkpoint_table(checkpoints))
    if items:
        click.echo(f"\n{items} items:")
        click.echo(item_table(listed))
    sys.exit(exit_code(job.state))
