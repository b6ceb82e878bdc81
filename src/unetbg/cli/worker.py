"""``unetbg worker``: start a Celery worker for unetbg jobs.

It replaces this process with Celery's own (``os.execve``, :mod:`unetbg.cli._celery`).
"""

from __future__ import annotations

import os
import socket
import sys

import click

from unetbg.cli._celery import QUEUES, celery_argv, require_broker
from unetbg.cli._service import RequestError


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
    "--hostname",
    "-n",
    "--name",
    default=None,
    help="Node name, unique per worker (default: unetbg-<queues>[-gpuN]-<pid>@<host>).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve this worker's Prometheus metrics at http://HOST:PORT/metrics "
    "(images, chunk times, model loads, tasks; docs/deployment.md).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics endpoint binds. Any other than loopback needs "
    "UNETBG_API_KEY, which scrapers then send as 'Authorization: Bearer KEY'.",
)
def worker(
    queues: str,
    gpu: int | None,
    concurrency: int,
    loglevel: str,
    hostname: str | None,
    metrics_port: int | None,
    metrics_host: str,
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
    settings = require_broker()
    metrics: list[str] = []
    if metrics_port is not None:
        from unetbg.workers.metrics_endpoint import (
            MetricsRefused,
            new_values_folder,
            required_key,
        )

        try:
            required_key(metrics_host, settings)  # refused here, with exit status 2
        except MetricsRefused as exc:
            raise RequestError(str(exc)) from None
        folder = new_values_folder()
        metrics = ["--metrics-port", str(metrics_port), "--metrics-host", metrics_host]
        metrics += ["--metrics-dir", folder]
    from unetbg.db.schema import SchemaOutOfDate, ensure_schema

    try:
        ensure_schema(settings.database_url)  # fail here, not in the first task
    except SchemaOutOfDate as exc:
        raise RequestError(str(exc)) from None
    env = dict(os.environ)
    if gpu is not None:
        # Must be in the environment before any process of the worker imports torch.
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if metrics:
        # Read by prometheus_client when first imported: before Celery starts.
        env["PROMETHEUS_MULTIPROC_DIR"] = folder
    name = hostname or default_node_name(chosen, gpu)
    argv = celery_argv(
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
        *metrics,
    )
    os.execve(sys.executable, argv, env)


def default_node_name(queues: list[str], gpu: int | None) -> str:
    """``unetbg-<queues>[-gpuN]-<pid>@<host>``: unique per worker process, so two workers
    started alike on one host are two nodes in Flower and ``celery inspect``. The pid is
    the worker's own (``os.execve`` keeps it)."""
    gpu_part = "" if gpu is None else f"-gpu{gpu}"
    return f"unetbg-{'-'.join(queues)}{gpu_part}-{os.getpid()}@{socket.gethostname()}"
