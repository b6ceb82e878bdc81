"""The threads of :func:`unetbg.removal.process_images`: how many and how deep their
queues (:class:`PipelineLimits`), what they held and timed (:class:`PipelineStats`),
and the reader/writer pools themselves (:func:`executors`), each helper thread made
nicer than the network's (:func:`lower_priority`)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PipelineLimits:
    """Threads and queue depths (in images) of :func:`~unetbg.removal.pipeline.process_images`.

    ``read_ahead`` / ``write_behind`` default to twice the handle's batch size;
    ``read_ahead`` is raised to one batch if set lower (the network's batches would
    shrink otherwise).
    ``serial=True``: everything in the calling thread, one image after the other.
    """

    readers: int = 1
    writers: int = 2
    read_ahead: int | None = None
    write_behind: int | None = None
    serial: bool = False
    #: Added to the niceness of the reader, writer and reporter threads (Linux: per
    #: thread). The network's threads then keep the cores while they compute, and the
    #: helpers run in the gaps (OpenMP barriers, waits for the GPU): a helper that
    #: preempts one of the network's threads stalls all of them at the next barrier.
    helper_nice: int = 10

    def __post_init__(self) -> None:
        for name in ("readers", "writers", "read_ahead", "write_behind"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")


@dataclass
class PipelineStats:
    """Filled by :func:`~unetbg.removal.pipeline.process_images` when passed in: what the pipeline held and did."""

    #: The most images held at once (read or being read, predicted, not yet reported).
    peak_held: int = 0
    #: ``read_ahead + batch_size + write_behind``: what ``peak_held`` never exceeds.
    bound: int = 0
    #: Seconds the network stage spent in the model, and waiting for inputs.
    network_s: float = 0.0
    wait_read_s: float = 0.0
    batches: int = 0
    _held: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def hold(self, count: int = 1) -> None:
        with self._lock:
            self._held += count
            self.peak_held = max(self.peak_held, self._held)


def lower_priority(nice: int) -> None:
    """Make the calling thread ``nice`` steps nicer (Linux: niceness is per thread)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


class InlineExecutor(Executor):
    """Runs each task at once in the caller: the serial loop uses the same code."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered through the future, as a pool would
            future.set_exception(exc)
        return future


def executors(limits: PipelineLimits) -> tuple[Executor, Executor]:
    """The reader and writer threads (at ``helper_nice``), or none (``serial``)."""
    if limits.serial:
        return InlineExecutor(), InlineExecutor()
    nice = (limits.helper_nice,)
    readers = ThreadPoolExecutor(
        limits.readers, "unetbg-read", initializer=lower_priority, initargs=nice
    )
    writers = ThreadPoolExecutor(
        limits.writers, "unetbg-write", initializer=lower_priority, initargs=nice
    )
    return readers, writers
