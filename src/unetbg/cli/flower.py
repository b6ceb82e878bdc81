"""``unetbg flower``: start Flower (live workers and tasks) on the configured broker.

It replaces this process with Flower's own (``os.execve``, :mod:`unetbg.cli._celery`).
"""

from __future__ import annotations

import os
import sys

import click

from unetbg.cli._celery import celery_argv, require_broker, require_free_port
from unetbg.cli._service import RequestError


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; keep loopback unless basic auth is set.",
)
def flower(port: int, address: str) -> None:
    """Start Flower (live workers and tasks) on the configured broker.

    With UNETBG_FLOWER_BASIC_AUTH=user:password the pages and the REST API need
    that login; without it the REST API stays disabled (Flower's default) and
    only a loopback address is allowed. A port in use is refused before Flower starts
    (exit status 2).
    """
    settings = require_broker()
    env = dict(os.environ)
    if settings.flower_basic_auth:
        # Via the environment, not argv: argv is visible to every local user in `ps`.
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth
    elif address not in ("127.0.0.1", "localhost", "::1"):
        raise RequestError(
            f"refusing to serve Flower on {address} without a login: "
            "set UNETBG_FLOWER_BASIC_AUTH=user:password (or use --address 127.0.0.1)"
        )
    require_free_port(address, port)
    argv = celery_argv("flower", f"--port={port}", f"--address={address}")
    os.execve(sys.executable, argv, env)
