"""Starting Celery's own processes (``unetbg worker``, ``unetbg flower``).

Both replace this process with Celery's (``os.execve``), so signals (Ctrl-C, SIGTERM
from a supervisor) reach Celery directly and its exit status is ours.
"""

from __future__ import annotations

import sys

from unetbg.cli._service import RequestError

QUEUES = ("train", "infer")


def require_broker():
    """The settings, or exit status 2 when no broker is configured (nothing to start)."""
    from unetbg.settings import get_settings

    settings = get_settings()
    if settings.embedded:
        raise RequestError(
            "no broker configured: set UNETBG_BROKER_URL (e.g. redis://127.0.0.1:6379/0). "
            "Without one, jobs run inside the submitting command and need no worker."
        )
    return settings


def celery_argv(*args: str) -> list[str]:
    """``python -m celery -A unetbg.workers.app ARGS…`` for ``os.execve``."""
    return [sys.executable, "-m", "celery", "-A", "unetbg.workers.app", *args]
