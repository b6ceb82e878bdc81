"""``unetbg cancel JOB``: ask a job to stop."""

from __future__ import annotations

import json

import click

from unetbg.cli._service import CANCEL_EXIT_HELP, service_errors


@click.command(epilog=CANCEL_EXIT_HELP)
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON afterwards.")
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job: queued work is dropped, running work stops at its next image or
    training step (training keeps its last checkpoint). Returns at once."""
    from unetbg import jobs

    job = service_errors(lambda: jobs.cancel_job(job_id))
    if as_json:
        click.echo(json.dumps(job.to_dict(), indent=2))
    elif job.final and not job.cancel_requested:
        click.echo(f"job {job.id} already finished ({job.state}); nothing to cancel")
    elif job.final:
        click.echo(f"job {job.id}: {job.state}")
    else:
        click.echo(
            f"job {job.id}: cancel requested; it stops at its next step (`unetbg status {job.id}`)"
        )
