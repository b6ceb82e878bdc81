"""A worker's own figures for Prometheus, recorded where the work happens: in the pool
processes Celery forks.

Recording is on only while ``PROMETHEUS_MULTIPROC_DIR`` is set, as ``unetbg worker
--metrics-port`` sets it (:mod:`unetbg.workers.metrics_endpoint`): each pool process
then writes its values to its own files there (prometheus_client's multiprocess mode)
and the worker's main process serves their sum. Without it (embedded mode, a worker
without metrics) nothing is recorded and prometheus_client is never imported.

The metrics (all prefixed ``unetbg_worker_``):

* ``images_total{state}``: images cut out, ``succeeded`` or ``failed``;
* ``chunk_seconds``: how long each remove-dir chunk task took (histogram);
* ``model_load_seconds``: how long loading a model took (histogram; once per process
  and checkpoint version);
* ``tasks_total{task,outcome}``: tasks run, by name and Celery's outcome (``success``,
  ``failure``, ``retry``, …; a deferred duplicate delivery is a ``retry``), or the
  outcome the task's exception names (``cancelled``: a task its job's cancel stopped).
"""

from __future__ import annotations

import functools
import os
from types import SimpleNamespace

from celery.signals import task_postrun


def enabled() -> bool:
    """Whether this process records metrics (module docstring)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


@functools.cache
def _metrics() -> SimpleNamespace:
    # Imported on first use, in the pool process: prometheus_client reads
    # PROMETHEUS_MULTIPROC_DIR when it is imported.
    from prometheus_client import Counter, Histogram

    return SimpleNamespace(
        images=Counter("unetbg_worker_images", "Images cut out by this worker.", ["state"]),
        chunk_seconds=Histogram(
            "unetbg_worker_chunk_seconds",
            "Run time of remove-dir chunk tasks.",
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
        ),
        model_load_seconds=Histogram(
            "unetbg_worker_model_load_seconds",
            "Time to load a model into a worker process.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
        ),
        tasks=Counter("unetbg_worker_tasks", "Tasks run by this worker.", ["task", "outcome"]),
    )


def count_image(state: str) -> None:
    """One image ended in ``state`` (``succeeded`` or ``failed``)."""
    if enabled():
        _metrics().images.labels(state).inc()


def observe_chunk(seconds: float) -> None:
    if enabled():
        _metrics().chunk_seconds.observe(seconds)


def observe_model_load(seconds: float) -> None:
    if enabled():
        _metrics().model_load_seconds.observe(seconds)


def task_outcome(state: str | None, retval: object = None) -> str:
    """The ``outcome`` label of a task that ended in Celery ``state`` with ``retval`` (its
    return value or exception): an exception may name its own (``JobCancelled``:
    ``cancelled``, never a failure); else the state, lower case."""
    return getattr(retval, "outcome", None) or (state or "unknown").lower()


@task_postrun.connect
def _count_task(sender=None, state: str | None = None, retval=None, **_kwargs) -> None:
    if enabled() and sender is not None:
        _metrics().tasks.labels(sender.name, task_outcome(state, retval)).inc()
