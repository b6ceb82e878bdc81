"""``unetbg runs``: the training run folders under <data dir>/runs, and pruning them."""

from __future__ import annotations

import json

import click

from unetbg.cli._render import size_text, table
from unetbg.cli._service import service_errors


@click.group()
def runs() -> None:
    """Training run folders under <data dir>/runs (see `unetbg config`)."""


#: How a run's best compares with the default model (``RunView.beats_default``).
_VERSUS = {True: "better", False: "worse", None: "-"}


@runs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_runs(as_json: bool) -> None:
    """List run folders, best validation IoU first, with their sizes on disk and whether
    their best beats the default model (as `--checkpoint best` compares them, on the
    validation sets both were scored on; '-': no shared set to compare on)."""
    from unetbg import jobs

    found = service_errors(jobs.list_runs)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in found], indent=2))
        return
    if not found:
        click.echo("no run folders")
        return
    click.echo(
        table(
            ("SIZE", "VAL IOU", "VS DEFAULT", "JOB", "STATE", "BEST CHECKPOINT", "PATH"),
            [
                (
                    size_text(r.bytes),
                    "-" if r.score is None else f"{r.score:.4f}",
                    _VERSUS[r.beats_default],
                    r.job_id,
                    r.state,
                    "registered" if r.best_checkpoints else "",
                    r.path,
                )
                for r in found
            ],
        )
    )
    click.echo(f"total {size_text(sum(r.bytes for r in found))}")


@runs.command()
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Runs kept whole (the best by validation IoU).",
)
@click.option("--yes", is_flag=True, help="Delete; without it, only say what would go.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
def prune(keep: int, yes: bool, as_json: bool) -> None:
    """Free disk space: keep the best --keep runs whole; of every other run keep only its
    registered best checkpoint (`unetbg checkpoints`) and small records, and delete the
    rest (last_model.pth, the resume state, is most of a run). A run with no registered
    best checkpoint is deleted entirely. The default model is the baseline: a run that
    scores below it (`unetbg runs list`, VS DEFAULT) is never kept whole. Runs whose job
    is queued or running, or written to within UNETBG_HEARTBEAT_TIMEOUT, are left alone.
    Without --yes nothing is deleted.
    """
    from unetbg import jobs

    plan = service_errors(lambda: jobs.plan_prune(keep))
    freed = service_errors(lambda: jobs.prune_runs(plan)) if yes else plan.bytes
    if as_json:
        click.echo(json.dumps(plan.to_dict() | {"deleted": yes}, indent=2))
        return
    for run in plan.busy:
        click.echo(f"busy, left alone: {run.path}")
    for run in plan.below_default:
        click.echo(f"below the default model, not kept whole: {run.path}")
    for run in plan.keep:
        click.echo(f"keep: {run.path} ({size_text(run.bytes)})")
    verb = "deleted" if yes else "would delete"
    for _, paths in plan.remove:
        for path in paths:
            click.echo(f"{verb}: {path}")
    click.echo(f"{verb} {size_text(freed)}" + ("" if yes else "; run again with --yes"))
