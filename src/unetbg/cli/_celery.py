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


def require_free_port(address: str, port: int) -> None:
    """Exit status 2 when ``address``:``port`` cannot be listened on: checked before
    Flower starts, whose own bind error is a traceback after its start-up lines.

    Bound the way Tornado (Flower's server) binds, SO_REUSEADDR included, so a port
    whose last connection lingers in TIME_WAIT counts as free, as it is for Flower.
    """
    import errno
    import socket

    try:
        addresses = socket.getaddrinfo(
            address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise RequestError(f"cannot listen on {address}: {exc.strerror} (--address)") from None
    for family, kind, proto, _, sockaddr in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # Tornado too: "::" leaves 0.0.0.0 to its own socket
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise RequestError(
                        f"port {port} on {address} is in use: stop what listens there "
                        "or pick another (--port)"
                    ) from None
                raise RequestError(
                    f"cannot listen on port {port} on {address}: {exc.strerror} (--address, --port)"
                ) from None


def celery_argv(*args: str) -> list[str]:
    """``python -m celery -A unetbg.workers.app ARGS…`` for ``os.execve``."""
    return [sys.executable, "-m", "celery", "-A", "unetbg.workers.app", *args]
