"""``unetbg submit-evaluate``: record an evaluation job and queue it."""

from __future__ import annotations

import click

from unetbg.cli._evaluate_options import check_evaluation_options, evaluation_options
from unetbg.cli._follow import JSON_HELP, submit_and_follow
from unetbg.cli._service import EXIT_HELP, service_errors, usable_device, verified_checkpoint
from unetbg.settings import CHECKPOINT_ENV


@click.command("submit-evaluate", epilog=EXIT_HELP)
@click.argument("checkpoint", default="best", required=False, envvar=CHECKPOINT_ENV)
@evaluation_options
@click.option("--wait", is_flag=True, help="Follow the job until it ends and print the figures.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def submit_evaluate(
    checkpoint,
    coco_root,
    data,
    split,
    val_percent,
    limit,
    threshold,
    device,
    batch_size,
    image_size,
    wait,
    as_json,
    **switches,
) -> None:
    """Submit an evaluation of CHECKPOINT (default: $UNETBG_CHECKPOINT, else best; or
    'default', a registered id, a path) at the images' original resolution, with the
    options of `unetbg evaluate`; prints the job id."""
    from unetbg import jobs

    data = check_evaluation_options(coco_root, data, image_size)
    usable_device(device)
    checkpoint_path = verified_checkpoint(checkpoint)
    job_id = service_errors(
        lambda: jobs.create_evaluate_job(
            checkpoint_path,
            coco_root,
            split,
            threshold=threshold,
            limit=limit,
            device=device,
            data=data,
            val_percent=val_percent,
            batch_size=batch_size,
            image_size=image_size,
            switches=switches,
        )
    )
    submit_and_follow(job_id, wait, as_json)
