"""``unetbg worker --metrics-port PORT [--metrics-host HOST]``: the worker's main process
serves the Prometheus text of its pool processes (:mod:`unetbg.workers.metrics`).

``PROMETHEUS_MULTIPROC_DIR`` must name the folder the pool processes write their values
to before the worker starts: prometheus_client reads it when first imported, and
Celery's command line imports it early (through Flower's plugin). ``unetbg worker``
therefore makes a fresh private folder (:func:`new_values_folder`), puts it in the
environment and passes it on as ``--metrics-dir``. A Celery bootstep of the worker then
serves ``GET /metrics`` from a thread of the main process and removes that folder
when the worker stops.

Who may read it: on a loopback host (the default, 127.0.0.1) anyone on the machine,
unless ``UNETBG_API_KEY`` is set; on any other host the key is required (the worker
refuses to start without it), and a scrape without ``Authorization: Bearer KEY`` gets
401. The figures name no file or job, but a worker is no public service.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import shutil
import socket
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click
from celery import bootsteps

from unetbg.settings import Settings, get_settings

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
#: The Celery worker options this step adds (``celery worker`` and ``unetbg worker``).
OPTIONS = (
    click.Option(
        ("--metrics-port",),
        type=click.IntRange(1, 65535),
        default=None,
        help="Serve this worker's Prometheus metrics on this port (/metrics).",
    ),
    click.Option(
        ("--metrics-host",),
        default=DEFAULT_HOST,
        show_default=True,
        help="Address the metrics endpoint binds; any but loopback needs UNETBG_API_KEY.",
    ),
    click.Option(
        ("--metrics-dir",),
        default=None,
        hidden=True,
        help="The PROMETHEUS_MULTIPROC_DIR folder this worker removes when it stops.",
    ),
)


def new_values_folder() -> str:
    """A fresh folder, readable by this user only, for the pool processes' values."""
    return tempfile.mkdtemp(prefix="unetbg-metrics-")


class MetricsRefused(ValueError):
    """The endpoint must not start as asked (a non-loopback host without a key)."""


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (``localhost``, 127.x, ::1)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def required_key(host: str, settings: Settings | None = None) -> str | None:
    """The key a scrape must send (``None``: none needed); raises :class:`MetricsRefused`
    for a host other than loopback when ``UNETBG_API_KEY`` is not set."""
    key = (settings or get_settings()).api_key
    if not key and not is_loopback(host):
        raise MetricsRefused(
            f"refusing to serve worker metrics on {host} without a key: set UNETBG_API_KEY "
            f"(scrapers then send 'Authorization: Bearer KEY'), or bind {DEFAULT_HOST}"
        )
    return key or None


class MetricsServer:
    """``GET /metrics`` over the multiprocess folder, in a daemon thread."""

    def __init__(self, host: str, port: int, key: str | None) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        expected = f"Bearer {key}".encode() if key else None

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?", 1)[0] != "/metrics":
                    self._send(404, b"not found: the metrics are at /metrics\n", "text/plain")
                    return
                sent = (self.headers.get("Authorization") or "").encode()
                if expected is not None and not hmac.compare_digest(sent, expected):
                    self._send(401, b"unauthorized\n", "text/plain", bearer=True)
                    return
                # A fresh registry per scrape: it reads the pool processes' files now.
                registry = CollectorRegistry()
                MultiProcessCollector(registry)
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)

            def _send(self, status: int, body: bytes, kind: str, bearer: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                if bearer:
                    self.send_header("WWW-Authenticate", 'Bearer realm="unetbg worker"')
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args) -> None:  # noqa: A002 (the base's name)
                log.debug("metrics %s: " + format, self.client_address[0], *args)

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
        # Bound in start(): after the pool forked, so its processes do not inherit it.
        self.httpd = server_class((host, port), Handler, bind_and_activate=False)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        try:
            self.httpd.server_bind()
            self.httpd.server_activate()
        except OSError:
            self.httpd.server_close()
            raise
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()


class MetricsStep(bootsteps.StartStopStep):
    """The worker bootstep (module docstring); inactive without ``--metrics-port``."""

    requires = ("celery.worker.components:Pool",)

    def __init__(
        self, parent, metrics_port=None, metrics_host=DEFAULT_HOST, metrics_dir=None, **kwargs
    ) -> None:
        super().__init__(parent, **kwargs)
        self.enabled = metrics_port is not None
        self.server: MetricsServer | None = None
        self.folder = metrics_dir
        if not self.enabled:
            return
        key = required_key(metrics_host)
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            raise MetricsRefused(
                "worker metrics need PROMETHEUS_MULTIPROC_DIR set before the worker starts: "
                "start it with `unetbg worker --metrics-port PORT`, which does so"
            )
        self.server = MetricsServer(metrics_host, metrics_port, key)
        self.address = f"{metrics_host}:{metrics_port}"

    def start(self, parent) -> None:
        self.server.start()
        log.info(
            "serving worker metrics on http://%s/metrics (pool values in %s)",
            self.address,
            os.environ["PROMETHEUS_MULTIPROC_DIR"],
        )

    def stop(self, parent) -> None:
        self.server.stop()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
