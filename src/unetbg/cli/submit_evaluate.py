"""``unetbg submit-evaluate``: record an evaluation job and queue it."""

from __future__ import annotations

from pathlib import Path

import click

from unetbg.cli._follow import JSON_HELP, submit_and_follow
from unetbg.cli._service import EXIT_HELP, service_errors, usable_device, verified_checkpoint
from unetbg.settings import CHECKPOINT_ENV


@click.command("submit-evaluate", epilog=EXIT_HELP)
@click.argument("checkpoint", default="best", required=False, envvar=CHECKPOINT_ENV)
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
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def submit_evaluate(checkpoint, coco_root, split, threshold, limit, device, wait, as_json) -> None:
    """Submit an evaluation of CHECKPOINT (default: $UNETBG_CHECKPOINT, else best; or
    'default', a registered id, a path) at the images' original resolution; prints the
    job id."""
    from unetbg import jobs

    usable_device(device)
    checkpoint_path = verified_checkpoint(checkpoint)
    job_id = service_errors(
        lambda: jobs.create_evaluate_job(
            checkpoint_path, coco_root, split, threshold=threshold, limit=limit, device=device
        )
    )
    submit_and_follow(job_id, wait, as_json)
