"""``unetbg worker`` and ``unetbg flower``: start the Celery processes.

Both replace this process with Celery's own (``os.execve``), so signals (Ctrl-C,
SIGTERM from a supervisor) reach Celery directly and its exit status is ours.
"""

from __future__ import annotations

import os
import socket
import sys

import click

from unetbg.cli.jobs import RequestError

QUEUES = ("train", "infer")


def _require_broker():
    from unetbg.settings import get_settings

    settings = get_settings()
    if settings.embedded:
        raise RequestError(
            "no broker configured: set UNETBG_BROKER_URL (e.g. redis://127.0.0.1:6379/0). "
            "Without one, jobs run inside the submitting command and need no worker."
        )
    return settings


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "unetbg.workers.app", *args]


@click.command()
@click.option(
    "--queues",
    "-Q",
    default="train,infer",
    show_default=True,
    help="Comma-separated queues to consume: train (training, evaluation), infer (remove-dir chunks).",
)
@click.option(
    "--gpu",
    type=click.IntRange(min=0),
    default=None,
    help="Use only GPU N (sets CUDA_VISIBLE_DEVICES before torch is imported).",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes; each loads its own model copy.",
)
@click.option(
    "--loglevel",
    "-l",
    type=click.Choice(("debug", "info", "warning", "error")),
    default="info",
    show_default=True,
)
@click.option(
    "--hostname", "-n", default=None, help="Node name (default: unetbg-<queues>[-gpuN]@<host>)."
)
def worker(
    queues: str, gpu: int | None, concurrency: int, loglevel: str, hostname: str | None
) -> None:
    """Start a Celery worker for unetbg jobs (needs UNETBG_BROKER_URL).

    One worker per GPU: `unetbg worker --gpu 0 -Q train` and `unetbg worker --gpu 1 -Q infer`.
    """
    chosen = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(chosen) - set(QUEUES))
    if not chosen or unknown:
        raise click.BadParameter(
            f"unknown queue(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(QUEUES)}",
            param_hint="--queues",
        )
    settings = _require_broker()
    from unetbg.db.schema import SchemaOutOfDate, ensure_schema

    try:
        ensure_schema(settings.database_url)  # fail here, not in the first task
    except SchemaOutOfDate as exc:
        raise RequestError(str(exc)) from None
    env = dict(os.environ)
    if gpu is not None:
        # Must be in the environment before any process of the worker imports torch.
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    name = (
        hostname
        or f"unetbg-{'-'.join(chosen)}{'' if gpu is None else f'-gpu{gpu}'}@{socket.gethostname()}"
    )
    argv = _celery(
        "worker",
        "-Q",
        ",".join(chosen),
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "-l",
        loglevel,
        "-n",
        name,
    )
    os.execve(sys.executable, argv, env)


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
    only a loopback address is allowed.
    """
    settings = _require_broker()
    env = dict(os.environ)
    if settings.flower_basic_auth:
        # Via the environment, not argv: argv is visible to every local user in `ps`.
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth
    elif address not in ("127.0.0.1", "localhost", "::1"):
        raise RequestError(
            f"refusing to serve Flower on {address} without a login: "
            "set UNETBG_FLOWER_BASIC_AUTH=user:password (or use --address 127.0.0.1)"
        )
    argv = _celery("flower", f"--port={port}", f"--address={address}")
    os.execve(sys.executable, argv, env)
