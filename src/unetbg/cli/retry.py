"""``unetbg retry JOB``: send a job's unfinished work again."""

from __future__ import annotations

import click

from unetbg.cli._follow import JSON_HELP, submit_and_follow
from unetbg.cli._service import EXIT_HELP, service_errors


@click.command(epilog=EXIT_HELP)
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Follow the job until it ends.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def retry(job_id: str, wait: bool, as_json: bool) -> None:
    """Send JOB's unfinished work again, e.g. when its queued messages were lost (a Redis
    restarted without persistence: `unetbg status` flags such a job) or it ended badly.

    remove-dir: its failed and cancelled images are redone, and its images still waiting
    are queued again (an image a live worker holds is left to it). Training: a stopped run
    resumes from its last_model.pth; a queued one is sent again. Evaluation: run again.
    Prints the job id; without a broker the job runs here.
    """
    from unetbg import jobs

    job_id = service_errors(lambda: jobs.retry_job(job_id))
    submit_and_follow(job_id, wait, as_json)
