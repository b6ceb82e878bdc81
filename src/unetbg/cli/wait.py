"""``unetbg wait JOB...``: follow jobs that are already queued or running to their end."""

from __future__ import annotations

import json
import sys

import click

from unetbg.cli._follow import follow, report
from unetbg.cli._service import EXIT_HELP, EXIT_OK, exit_code, service_errors


@click.command(epilog=EXIT_HELP)
@click.argument("job_ids", metavar="JOB...", nargs=-1, required=True)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the final jobs as one JSON array on stdout (in the order given).",
)
def wait(job_ids: tuple[str, ...], as_json: bool) -> None:
    """Wait for each JOB to end (any unique prefix of its id), showing its progress as a
    submitting --wait does, then its summary.

    Attaching never changes a job: Ctrl-C only stops watching. Exit status: 0 when every
    job succeeded, 1 when one ended failed, partial or cancelled, 2 for an unknown job
    (checked for all of them before waiting).
    """
    from unetbg import jobs

    # Every id first: a typo in the last one is said before anything is waited for.
    ids = [service_errors(lambda job_id=job_id: jobs.get_job(job_id)).id for job_id in job_ids]
    ended = []
    for job_id in dict.fromkeys(ids):
        job = follow(job_id, None)
        if job is None:  # Ctrl-C: the jobs go on
            sys.exit(EXIT_OK)
        if not as_json:
            report(job, as_json=False)
        ended.append(job)
    if as_json:
        click.echo(json.dumps([job.to_dict() for job in ended], indent=2))
    sys.exit(max(exit_code(job.state) for job in ended))
