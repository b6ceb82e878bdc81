"""What every job command shares with the job service: exit statuses and their help
texts, the service's refusals as exit status 2, and the checks made before a job is
recorded (checkpoint, device).

Exit status: 0 done (or still queued/running), 1 the job failed, ended ``partial``
or was cancelled, 2 a usage error (unknown job, bad option, no checkpoint, …).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from unetbg.settings import CHECKPOINT_ENV

F = TypeVar("F", bound=Callable[..., object])

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE = 0, 1, 2
#: Job states that make a command exit with 1.
BAD_STATES = ("failed", "partial", "cancelled")

EXIT_HELP = (
    "\b\nExit status: 0 done (or still queued/running), 1 the job failed, "
    "ended partial or was cancelled, 2 usage error."
)

#: For the listing commands (`jobs`, `checkpoints`), which report no job outcome.
LIST_EXIT_HELP = (
    "\b\nExit status: 0 listed (possibly nothing), 2 usage error "
    "(bad option, unknown job, database schema behind)."
)
#: `cancel` succeeds whatever state the job ends up in.
CANCEL_EXIT_HELP = (
    "\b\nExit status: 0 cancel requested, or the job had already finished "
    "(nothing to cancel), 2 usage error (unknown job, …)."
)


#: What ``--checkpoint`` takes, said once for every command that has it.
CHECKPOINT_HELP = (
    "'best' (the best model here: a registered checkpoint only where its val IoU beats "
    "the default model's on a validation set both were scored on, else the default; "
    "`unetbg checkpoints` says which), 'default' (the model shipped with unetbg), a "
    f"registered checkpoint id or a .pth path. Env: {CHECKPOINT_ENV}."
)


def checkpoint_option(what: str = "") -> Callable[[F], F]:
    """``--checkpoint SPEC`` (default ``best``, else ``$UNETBG_CHECKPOINT``); ``what``
    starts its help (e.g. "Model of /api/remove: ")."""
    return click.option(
        "--checkpoint",
        envvar=CHECKPOINT_ENV,
        default="best",
        show_default=True,
        help=what + CHECKPOINT_HELP,
    )


class RequestError(click.ClickException):
    """A request the job service refused (exit status 2, like a usage error)."""

    exit_code = EXIT_USAGE


def service_errors(fn: Callable[[], Any]) -> Any:
    """Run ``fn``, turning the service's refusals into :class:`RequestError`."""
    from unetbg.db.schema import SchemaOutOfDate
    from unetbg.jobs import JobError

    try:
        return fn()
    except (JobError, SchemaOutOfDate) as exc:
        raise RequestError(str(exc)) from None


def checkpoint_path(spec: str) -> str:
    """The absolute path of ``spec`` (``best``, ``default``, a registered id, a path); exit
    status 2 (:class:`RequestError`) when there is no such checkpoint. Says on stderr
    which model ``best`` chose and why, and which registered files are gone. The file is
    not loaded."""
    from unetbg import jobs

    choice = service_errors(lambda: jobs.choose_checkpoint(spec))
    for note in choice.notes():
        click.echo(note, err=True)
    return choice.path


def verified_checkpoint(spec: str) -> str:
    """Resolve ``spec`` (``best``, an id, a path) and check it before any job is recorded:
    an unsafe or corrupt file is refused now (exit status 2) with the reason, instead of
    failing every chunk on the workers. Returns the absolute path.

    Without a broker this process runs the job: the file is loaded here. With one, only
    its header is read (``removal.header``, no torch: a submitting process held 1.1 GB
    for the load, issue 23); a fault only loading shows fails the job's images on the
    workers, naming it.
    """
    from unetbg.removal.checks import Refused, check_checkpoint
    from unetbg.removal.header import check_checkpoint_header
    from unetbg.settings import get_settings

    path = checkpoint_path(spec)
    check = check_checkpoint if get_settings().embedded else check_checkpoint_header
    try:
        return check(path)
    except Refused as exc:
        raise RequestError(str(exc)) from None


def usable_device(device: str, here: bool = False) -> str:
    """Refuse ``device`` now (exit status 2, nothing recorded or loaded) when it cannot work.

    A malformed name always; a device this machine lacks (``cuda`` without a GPU) when
    this process runs the model: ``here`` (``remove``, ``evaluate``) or in embedded mode.
    With a broker, the workers' hardware decides, and a worker that cannot use it fails
    the job once, saying so.
    """
    from unetbg.removal.checks import Refused, check_device
    from unetbg.removal.header import check_device_name
    from unetbg.settings import get_settings

    embedded = not here and get_settings().embedded
    note = " (no broker: this process would run the job)" if embedded else ""
    try:
        if not (here or embedded):  # its form only, without torch (issue 23)
            return check_device_name(device)
        return check_device(device, here or embedded, note)
    except Refused as exc:
        raise RequestError(str(exc)) from None


def exit_code(state: str) -> int:
    """The exit status for a job that ended (or stands) in ``state``."""
    return EXIT_JOB_FAILED if state in BAD_STATES else EXIT_OK
