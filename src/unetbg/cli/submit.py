"""``unetbg submit-train`` and ``unetbg submit-evaluate``: record a job and queue it."""

from __future__ import annotations

from pathlib import Path

import click

from unetbg.cli.jobs import (
    EXIT_HELP,
    service_errors,
    submit_and_follow,
    usable_device,
    verified_checkpoint,
)
from unetbg.cli.train import _NONE, _field_options
from unetbg.training.config import PRESETS


@click.command("submit-train", epilog=EXIT_HELP)
@click.option("--preset", type=click.Choice(list(PRESETS)), default="balanced", show_default=True)
@click.option(
    "--coco-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="COCO 2017 folder, as the workers see it (shared storage).",
)
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N on the worker.")
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it ends.")
@click.option("--json", "as_json", is_flag=True, help="With --wait: print the final job as JSON.")
@_field_options
def submit_train(preset, coco_root, device, wait, as_json, **fields) -> None:
    """Submit a training job and print its id.

    Every TrainConfig field can be overridden (same options as `unetbg train`).
    Epoch metrics and checkpoints are recorded as the run goes (`unetbg status JOB`);
    the run folder is <data dir>/runs/<job id>. Without a broker the job runs here.
    """
    from unetbg import jobs

    overrides = {k: (None if v is _NONE else v) for k, v in fields.items() if v is not None}
    overrides["coco_root"] = str(coco_root)
    if device is not None:
        overrides["device"] = device
    job_id = service_errors(lambda: jobs.create_train_job(preset, overrides))
    submit_and_follow(job_id, wait, as_json)


@click.command("submit-evaluate", epilog=EXIT_HELP)
@click.argument("checkpoint")
@click.option(
    "--coco-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="COCO 2017 folder, as the workers see it.",
)
@click.option("--split", type=click.Choice(("val", "train")), default="val", show_default=True)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.5,
    show_default=True,
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Score only the first N images."
)
@click.option("--device", default="auto", show_default=True)
@click.option("--wait", is_flag=True, help="Follow the job until it ends and print the figures.")
@click.option("--json", "as_json", is_flag=True, help="With --wait: print the final job as JSON.")
def submit_evaluate(checkpoint, coco_root, split, threshold, limit, device, wait, as_json) -> None:
    """Submit an evaluation of CHECKPOINT ('best', a registered id or a path) at the
    images' original resolution; prints the job id."""
    from unetbg import jobs

    usable_device(device)
    checkpoint_path = verified_checkpoint(checkpoint)
    job_id = service_errors(
        lambda: jobs.create_evaluate_job(
            checkpoint_path, coco_root, split, threshold=threshold, limit=limit, device=device
        )
    )
    submit_and_follow(job_id, wait, as_json)
