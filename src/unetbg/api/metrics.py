"""``GET /metrics``: Prometheus text, every name prefixed ``unetbg_``.

The job figures are read from the database at each scrape (:mod:`unetbg.jobs.stats`),
so they count the work of every worker, not only this process's; the queue depths come
from the broker (absent in embedded mode). This process adds its own: model loads and
their time per checkpoint, the removal queue, and request latency by route template.
A registry of its own keeps two apps in one process (tests) from sharing series.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from unetbg import jobs
from unetbg.settings import Settings

log = logging.getLogger(__name__)

#: The window of ``unetbg_images_per_second``.
RATE_WINDOW_S = 60
#: Request latency buckets (seconds): Prometheus's defaults stop at 10 s, but a CPU
#: ``/api/remove`` under load (a queue of full-size photos) takes longer; up to 2 min.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


class JobCollector:
    """The job service's figures, read at each scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self):
        by_kind = GaugeMetricFamily(
            "unetbg_jobs", "Jobs by kind and state.", labels=["kind", "state"]
        )
        for (kind, state), count in sorted(jobs.job_counts(self.settings).items()):
            by_kind.add_metric([kind, state], count)
        yield by_kind
        items = jobs.item_counts_by_state(self.settings)
        yield CounterMetricFamily(
            "unetbg_images_processed",
            "Images written by remove-dir jobs.",
            items.get("succeeded", 0),
        )
        yield CounterMetricFamily(
            "unetbg_images_failed",
            "Images remove-dir jobs could not process.",
            items.get("failed", 0),
        )
        recent = jobs.items_finished_since(RATE_WINDOW_S, self.settings)
        yield GaugeMetricFamily(
            "unetbg_images_per_second",
            f"Images finished (succeeded or failed) per second over the last {RATE_WINDOW_S} s.",
            recent / RATE_WINDOW_S,
        )
        if self.settings.embedded:
            return
        depth = GaugeMetricFamily(
            "unetbg_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"]
        )
        try:
            for queue, count in jobs.queue_depths(self.settings).items():
                depth.add_metric([queue], count)
        except Exception as exc:  # a broker that is down must not take the figures with it
            log.warning("queue depths unavailable: %s", exc)
            return
        yield depth


class ApiMetrics:
    """The series of one server, in a registry of its own."""

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(JobCollector(settings))
        self.model_loads = Counter(
            "unetbg_model_loads",
            "Times a checkpoint was loaded for /api/remove.",
            ["checkpoint"],
            registry=self.registry,
        )
        self.model_load_seconds = Gauge(
            "unetbg_model_load_seconds",
            "Seconds the last load of each checkpoint took.",
            ["checkpoint"],
            registry=self.registry,
        )
        self.remove_queue = Gauge(
            "unetbg_remove_queue_depth",
            "Images waiting for the model in /api/remove.",
            registry=self.registry,
        )
        self.latency = Histogram(
            "unetbg_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def model_loaded(self, checkpoint: str, seconds: float) -> None:
        self.model_loads.labels(checkpoint).inc()
        self.model_load_seconds.labels(checkpoint).set(seconds)


class LatencyMiddleware:
    """ASGI middleware: time every request, labelled by the route's template (``/api/jobs/
    {job_id}``, never the raw path, so ids do not multiply the series)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, routes: list) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.latency.labels(
                self._template(scope), scope["method"], str(status)
            ).observe(time.perf_counter() - t0)

    def _template(self, scope: Scope) -> str:
        for route in self.routes:
            if route.matches(scope)[0] != Match.NONE:  # PARTIAL: another method
                return route.path
        return "(unmatched)"
