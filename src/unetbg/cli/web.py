"""``unetbg web``: start the Streamlit page (cut-outs and the read-only job dashboard)."""

from __future__ import annotations

import os
import sys

import click

from unetbg.cli._service import checkpoint_option, checkpoint_path
from unetbg.settings import CHECKPOINT_ENV
from unetbg.weights import DEFAULT_SPEC


def streamlit_command(host: str, port: int, max_upload_mb: int) -> list[str]:
    """The ``python -m streamlit run`` command line for the packaged page."""
    from unetbg.web import APP_PATH

    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        # No "Deploy" button or developer menu: this is a tool, not an app in development.
        "--client.toolbarMode",
        "minimal",
        # Streamlit refuses bigger uploads in the browser, before any byte is sent.
        "--server.maxUploadSize",
        str(max_upload_mb),
    ]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535))
@checkpoint_option("The page's preselected model: ")
def web(host: str, port: int, checkpoint: str) -> None:
    """Start the web page: cut-outs for uploaded photos and a read-only job dashboard.

    Needs the optional `web` extra (Streamlit). Upload size is limited by
    UNETBG_MAX_UPLOAD_MB; a Flower link appears when UNETBG_FLOWER_URL is set.
    """
    try:
        import streamlit  # noqa: F401  (only checks that the extra is installed)
    except ImportError:
        raise click.ClickException(
            "the web page needs Streamlit, which is not installed: pip install 'unetbg[web]'"
        ) from None
    from unetbg.settings import get_settings

    settings = get_settings()
    env = dict(os.environ)
    # Checked now (exit status 2, with the reason); `best` and ids are chosen again by
    # the page at each visit, so a checkpoint registered meanwhile counts.
    path = checkpoint_path(checkpoint)
    keep = checkpoint in ("best", DEFAULT_SPEC) or checkpoint.strip().isdigit()
    env[CHECKPOINT_ENV] = checkpoint.strip() if keep else path
    command = streamlit_command(host, port, settings.max_upload_mb)
    click.echo(f"Serving the unetbg page on http://{host}:{port} (Ctrl+C stops it)", err=True)
    sys.stderr.flush()
    # Replace this process so signals (Ctrl+C, a supervisor's SIGTERM) reach
    # Streamlit directly and its exit status is ours.
    os.execve(sys.executable, command, env)
