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
    "shows no person (under 0.1 % of the photo), or all (a no-person image is marked). "
    "They are printed as they are read, 100 at a time; with --json as JSON Lines, one "
    "item per line after the job's line.",
)
@click.option(
    "--wait",
    is_flag=True,
    help="First follow the job until it ends, with the progress display of a submitting "
    "--wait (Ctrl-C stops watching; the job goes on); then show it, and exit as --wait does.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object (with --items: JSON Lines, the job's object on the "
    "first line, then one object per item).",
)
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
        epochs = jobs.list_epoch_metrics(job.id) if job.kind == "train" else []
        checkpoints = jobs.list_checkpoints(job.id) if job.kind == "train" else []
        return job, epochs, checkpoints

    if as_json:
        _echo_json(job_id, items)
    job, epochs, checkpoints = service_errors(load)
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
        _echo_item_tables(_pages(job.id, items))
    sys.exit(exit_code(job.state))


def _echo_json(job_id: str, items: str | None) -> None:
    """The job as the HTTP API's GET /api/jobs/{id} answers it; with ``items``, JSON Lines:
    that document on one line, then one line per item (GET /api/jobs/{id}/items's).
    Exits with the job's status."""
    from unetbg import jobs

    out = service_errors(lambda: jobs.job_document(job_id))
    for hint in out["hints"]:  # on stderr too: stdout stays JSON
        click.echo(f"note: {hint}", err=True)
    if not items:
        click.echo(json.dumps(out, indent=2))
        sys.exit(exit_code(out["state"]))
    click.echo(json.dumps(out))
    for page in _pages(out["id"], items):
        for item in page.items:
            click.echo(json.dumps(item.to_dict()))
    sys.exit(exit_code(out["state"]))


def _pages(job_id: str, items: str):
    """The pages of ``job_id``'s ``items``, each read when the one before is printed: a
    job of a million images is listed in the memory of one page."""
    from unetbg import jobs

    pages = jobs.item_pages(job_id, items)
    while (page := service_errors(lambda: next(pages, None))) is not None:
        yield page


def _echo_item_tables(pages) -> None:
    """Each page as a table as soon as it is read; the header once, over the first."""
    shown = False
    for page in pages:
        if page.items:
            rows = item_table(page.items)
            click.echo(rows if not shown else rows.split("\n", 1)[1])
            shown = True
    if not shown:
        click.echo(item_table([]))
