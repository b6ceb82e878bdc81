"""``unetbg submit-train``: record a training job and queue it."""

from __future__ import annotations

from pathlib import Path

import click

from unetbg.cli._follow import JSON_HELP, submit_and_follow
from unetbg.cli._service import EXIT_HELP, service_errors
from unetbg.cli._train_options import data_option, field_options, field_overrides
from unetbg.training.config import PRESETS


@click.command("submit-train", epilog=EXIT_HELP)
@click.option("--preset", type=click.Choice(list(PRESETS)), default="balanced", show_default=True)
@click.option(
    "--coco-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="COCO 2017 folder, as the workers see it (shared storage).",
)
@data_option
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N on the worker.")
@click.option(
    "--resume",
    "resume",
    metavar="RUN_OR_JOB",
    default=None,
    help="Continue a stopped (cancelled, lost, failed or finished) run from its "
    "last_model.pth as a job: a training job's id, or a run folder. The options given "
    "change its saved config (e.g. --epochs); --preset, --coco-root and --data do not apply.",
)
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it ends.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@field_options
def submit_train(preset, coco_root, data, device, resume, wait, as_json, **fields) -> None:
    """Submit a training job and print its id.

    Every TrainConfig field can be overridden (same options as `unetbg train`).
    Epoch metrics and checkpoints are recorded as the run goes (`unetbg status JOB`);
    the run folder is <data dir>/runs/<job id>. Without a broker the job runs here.
    """
    from unetbg import jobs

    overrides = field_overrides(fields)
    if coco_root is not None:
        overrides["coco_root"] = str(coco_root)
    if data:
        overrides["data"] = tuple(data)
    if device is not None:
        overrides["device"] = device
    if resume is not None:
        if coco_root is not None or data:
            raise click.UsageError(
                "--resume continues a run with its own data: drop --coco-root/--data"
            )
        job_id = service_errors(lambda: jobs.resume_train_job(resume, overrides))
    else:
        job_id = service_errors(lambda: jobs.create_train_job(preset, overrides))
    submit_and_follow(job_id, wait, as_json)
