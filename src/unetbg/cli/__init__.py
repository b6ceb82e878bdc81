"""The ``unetbg`` command line.

The root group only knows command names and the module that holds each one, so
``unetbg --help`` starts fast and never imports torch; a command's module is
imported when that command runs (or when its own ``--help`` is asked for).

One command (or group) per module; what several share sits in private modules by
purpose: ``_service`` (exit statuses, the job service's refusals, pre-submit checks),
``_render`` (tables and blocks), ``_follow`` (``--wait``), ``_options`` (output
options of ``remove``/``remove-dir``), ``_train_options`` (``TrainConfig`` fields),
``_celery`` (starting Celery's own processes).
"""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute" under unetbg.cli. One command (or group) per module.
COMMANDS: dict[str, tuple[str, str]] = {
    "coco": ("coco:coco", "Check and describe a COCO 2017 dataset folder."),
    "masks": ("masks:masks", "Check a mask folder (images/ + masks/ [+ ignore/])."),
    "train": ("train:train", "Train the model in the foreground."),
    "evaluate": ("evaluate:evaluate", "Score a checkpoint on a COCO split."),
    "remove": ("remove:remove", "Remove the background from a few images."),
    "remove-dir": ("remove_dir:remove_dir", "Remove backgrounds for a whole folder as a job."),
    "submit-train": ("submit_train:submit_train", "Submit a training job."),
    "submit-evaluate": ("submit_evaluate:submit_evaluate", "Submit an evaluation job."),
    "status": ("status:status", "Show one job and its items."),
    "jobs": ("list_jobs:list_jobs", "List recent jobs."),
    "cancel": ("cancel:cancel", "Cancel a queued or running job."),
    "retry": ("retry:retry", "Send a job's unfinished or failed work again."),
    "wait": ("wait:wait", "Follow queued or running jobs until they end."),
    "checkpoints": ("checkpoints:checkpoints", "List registered checkpoints and their sizes."),
    "runs": ("runs:runs", "List training run folders; prune them to free disk space."),
    "worker": ("worker:worker", "Start a Celery worker."),
    "flower": ("flower:flower", "Start Flower to monitor workers."),
    "db": ("db:db", "Database schema commands."),
    "config": ("config:config", "Print the effective settings."),
    "web": ("web:web", "Start the web page."),
    "serve": ("serve:serve", "Start the HTTP API (rembg-compatible /api/remove, jobs, metrics)."),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, _ = COMMANDS[cmd_name]
        module_name, attr = target.split(":")
        module = importlib.import_module(f"{__name__}.{module_name}")
        return getattr(module, attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            # Wherever a command opened the database: one line, never a traceback.
            from unetbg.db.session import database_busy

            message = database_busy(exc)
            if message is None:
                raise
            error = click.ClickException(message)
            error.exit_code = 2  # a usage error: nothing was changed
            raise error from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Uses the static help lines so listing commands imports nothing.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="unetbg")
def main() -> None:
    """Remove the background around people in photos with an attention U-Net.

    With no broker configured (UNETBG_BROKER_URL unset) jobs run in this
    process and are recorded in a local SQLite file; with Redis and a database
    configured the same commands drive Celery workers.
    """
