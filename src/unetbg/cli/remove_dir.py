"""``unetbg remove-dir``: a whole folder as a job (embedded, or on Celery workers)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from unetbg.cli._follow import JSON_HELP, submit_and_follow, watch_and_report
from unetbg.cli._options import (
    backend_option,
    batch_size_option,
    checkpoint_switches,
    output_option_flags,
    output_options_from_flags,
)
from unetbg.cli._service import (
    EXIT_HELP,
    checkpoint_option,
    service_errors,
    usable_device,
    verified_checkpoint,
)
from unetbg.removal import RunOptions


class _FolderOrURL(click.Path):
    """A local folder (checked as ``click.Path`` checks it), or an ``s3://bucket/prefix``
    URL kept as given: the job's planning lists it, and says what is wrong with it."""

    def convert(self, value, param, ctx):
        from unetbg.removal.storage import is_url

        if isinstance(value, str) and is_url(value):
            return value
        return super().convert(value, param, ctx)


@click.command(epilog=EXIT_HELP)
@click.argument("input_dir", type=_FolderOrURL(exists=True, file_okay=False, path_type=Path))
@click.argument("output_dir", type=_FolderOrURL(file_okay=False, path_type=Path))
@checkpoint_option()
@click.option(
    "--wait",
    is_flag=True,
    help="Follow the job with a progress bar until it ends (always the case "
    "without a broker, where the job runs in this process).",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=None,
    help="Images per worker task, fixed (default: UNETBG_CHUNK_SIZE, 16, for the "
    "first 1,000 tasks, then growing with a large job up to 256 images a task).",
)
@batch_size_option
@click.option("--overwrite", is_flag=True, help="Redo images whose output exists.")
@click.option("--follow-symlinks", is_flag=True, help="Follow links leaving the input folder.")
@output_option_flags
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Where the workers run the model: auto, cpu, cuda or cuda:N.",
)
@backend_option
@checkpoint_switches
@click.option(
    "--watch",
    is_flag=True,
    help="After the first pass, keep the job open and add every image that appears or "
    "changes under INPUT_DIR, once its file is complete (a changed image replaces its "
    "output). Stays in the foreground, with or without a broker; Ctrl-C or SIGTERM stops "
    "watching, lets the images already queued finish and ends the job with its counts "
    "(a second Ctrl-C cancels the rest). Hidden files and names without an image "
    "extension (.part, ~) are not watched.",
)
@click.option(
    "--settle",
    type=click.FloatRange(min=0.05),
    default=None,
    metavar="SECONDS",
    help="With --watch: how long a file's size and time must stay unchanged before it is "
    "read, where no close-after-write event says the writer is done (files moved in; "
    "systems without inotify). Default 1.5.",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.1),
    default=None,
    metavar="SECONDS",
    help="With --watch on s3:// prefixes: seconds between two listings of INPUT_DIR "
    "(object stores send no events; each listing costs one LIST request per 1,000 keys). "
    "Default 5.",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def remove_dir(
    input_dir,
    output_dir,
    checkpoint,
    wait,
    chunk_size,
    overwrite,
    follow_symlinks,
    kind,
    output_format,
    threshold,
    color,
    background,
    png_level,
    watch,
    settle,
    poll,
    as_json,
    **run_fields,
) -> None:
    """Remove the background of every image under INPUT_DIR into OUTPUT_DIR.

    Sub-folders are mirrored; outputs already present are skipped (so running the
    same command again does only what is missing or failed) unless --overwrite.
    Prints the job id. With a broker (UNETBG_BROKER_URL) the job is queued for the
    workers and the command returns; add --wait to follow it. The folder is recorded
    in batches and each batch's chunks are queued as soon as they are recorded, so
    workers start while a large folder is still being walked. With --watch the job
    stays open for new images until Ctrl-C or SIGTERM (see docs/jobs.md).

    INPUT_DIR and OUTPUT_DIR may both be S3 prefixes, s3://BUCKET/PREFIX (needs
    pip install 'unetbg[s3]'; credentials and endpoint as for any AWS tool:
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_ENDPOINT_URL). The
    workers then read and write the objects themselves (docs/deployment.md). With
    --watch an s3:// prefix is listed every --poll seconds and each new or replaced
    image object becomes an item.
    """
    from unetbg import jobs
    from unetbg.removal.storage import is_url

    remote = is_url(input_dir) or is_url(output_dir)
    _check_watch_options(watch, settle, poll, remote)
    options = output_options_from_flags(
        kind, color, background, output_format, threshold, png_level
    )
    run = RunOptions.take(run_fields)
    usable_device(run.device)
    checkpoint_path = verified_checkpoint(checkpoint)

    def create() -> str:
        return jobs.create_remove_dir_job(
            input_dir,
            output_dir,
            checkpoint_path,
            output=options,
            run=run,
            chunk_size=chunk_size,
            overwrite=overwrite,
            follow_symlinks=follow_symlinks,
            watch=watch,
        )

    if not watch:
        submit_and_follow(service_errors(create), wait, as_json)
        return

    def run_watch(**callbacks) -> jobs.JobView:
        session = _watch_session(input_dir, output_dir, remote, settle, poll, callbacks)
        return service_errors(lambda: session.run(create))

    sys.exit(watch_and_report(run_watch, as_json))


def _check_watch_options(watch: bool, settle, poll, remote: bool) -> None:
    """``--settle`` is for a watched folder, ``--poll`` for watched prefixes."""
    if settle is not None and not (watch and not remote):
        raise click.UsageError(
            "--settle needs --watch on a local folder (an s3:// prefix is polled: --poll)"
        )
    if poll is not None and not (watch and remote):
        raise click.UsageError("--poll needs --watch on s3:// prefixes")


def _watch_session(input_dir, output_dir, remote: bool, settle, poll, callbacks: dict):
    """The watch of a folder (file-system events) or of an object-store prefix (polled)."""
    if remote:
        from unetbg.watch.prefix import DEFAULT_POLL_S, PrefixWatchSession

        return PrefixWatchSession(input_dir, output_dir, poll or DEFAULT_POLL_S, **callbacks)
    from unetbg.watch import DEFAULT_SETTLE_S, WatchSession

    return WatchSession(input_dir, output_dir, settle or DEFAULT_SETTLE_S, **callbacks)
