"""``unetbg serve``: the HTTP API (rembg-compatible ``/api/remove``, jobs, metrics)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from unetbg.cli._options import backend_option
from unetbg.cli._service import EXIT_USAGE, checkpoint_option

EPILOG = """\b
Examples (KEY is UNETBG_API_KEY, or the content of the api-key file named at start):
  curl -H "Authorization: Bearer $KEY" -F file=@me.jpg \\
       http://127.0.0.1:7000/api/remove -o me.png
  curl -H "Authorization: Bearer $KEY" -F file=@me.jpg -F om=true \\
       http://127.0.0.1:7000/api/remove -o mask.png
  curl -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\
       -d '{"kind": "remove_dir", "input_dir": "/srv/in", "output_dir": "/srv/out"}' \\
       http://127.0.0.1:7000/api/jobs
  curl -H "Authorization: Bearer $KEY" http://127.0.0.1:7000/api/jobs/JOB_ID
  curl -H "Authorization: Bearer $KEY" http://127.0.0.1:7000/metrics

\b
Exit status: 0 stopped, 2 usage error (no key off loopback, bad root, no checkpoint).
Endpoints, security and the rembg mapping: docs/api.md; interactive docs at /docs.
"""


@click.command(epilog=EPILOG)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=7000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port (7000, rembg's default, so its clients need no change).",
)
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder jobs may read and write under (repeatable; added to UNETBG_API_ROOTS). "
    "Without any, jobs that name paths are refused.",
)
@click.option(
    "--max-upload-mb",
    type=click.IntRange(min=1),
    default=None,
    help="Largest image /api/remove accepts (default: UNETBG_MAX_UPLOAD_MB, 25).",
)
@click.option(
    "--max-upload-bytes",
    type=click.IntRange(min=1),
    default=None,
    help="The same limit in bytes (overrides --max-upload-mb).",
)
@click.option(
    "--queue-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Images that may wait for the model; beyond, /api/remove answers 503.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Waiting images run through the model together.",
)
@checkpoint_option(
    "Model of /api/remove (a request's checkpoint field picks another; every answer "
    "names its model in X-Unetbg-Model): "
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@backend_option
@click.option(
    "--log-level",
    type=click.Choice(("critical", "error", "warning", "info", "debug")),
    default="info",
    show_default=True,
)
def serve(
    host, port, roots, max_upload_mb, max_upload_bytes, queue_size, batch_size, checkpoint, device,
    backend, log_level,
) -> None:  # fmt: skip
    """Start the HTTP API: POST /api/remove (rembg-compatible), /api/jobs,
    /api/checkpoints, /metrics and /healthz, in one process.

    Every request but /healthz and the docs needs 'Authorization: Bearer KEY'. The key is
    UNETBG_API_KEY; without it, on a loopback address a random key is written to
    <data dir>/api-key (mode 0600) at each start, and any other address is refused.
    Jobs run in this process without a broker, on the workers with one.
    """
    from unetbg.api.auth import NoKeyError, key_for
    from unetbg.api.config import ApiConfig, parse_roots
    from unetbg.cli._service import checkpoint_path, usable_device
    from unetbg.removal.checks import Refused, check_backend
    from unetbg.settings import get_settings

    settings = get_settings()
    try:
        key, key_file = key_for(host, settings)
    except NoKeyError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    usable_device(device, here=True)
    try:
        check_backend(backend, runs_here=True)
    except Refused as exc:
        raise click.UsageError(str(exc)) from None
    checkpoint_path(checkpoint)  # exits 2 now if there is no such model
    try:
        config = ApiConfig(
            key=key,
            settings=settings,
            roots=parse_roots(settings.api_roots) + tuple(roots),
            max_upload_bytes=max_upload_bytes or (max_upload_mb or settings.max_upload_mb) * 2**20,
            queue_size=queue_size,
            batch_size=batch_size,
            checkpoint=checkpoint,
            device=device,
            backend=backend,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    import uvicorn

    from unetbg.api.app import create_app

    if key_file is not None:
        click.echo(f"API key (generated for this run): {key_file}", err=True)
    if not config.roots:
        click.echo("note: no --root: jobs that name server-side paths are refused", err=True)
    click.echo(f"Serving the unetbg API on http://{host}:{port} (docs at /docs)", err=True)
    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level)
