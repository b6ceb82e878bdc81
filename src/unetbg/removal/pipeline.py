"""Processing planned items: read, predict, render, encode and write, pipelined.

:func:`process_images` is the one removal loop behind ``unetbg remove``, the
``remove-dir`` chunks and ``ModelInference.batch_process``. Three stages overlap:

* **readers** (a thread pool, ``PipelineLimits.readers``): decode each input
  (:func:`unetbg.images.read_image`) and, when the model handle offers ``prepare``,
  letterbox and normalise it, ahead of the network;
* **the network** (the calling thread): batches of ``model_handle.batch_size``
  prepared images;
* **writers** (a thread pool, ``PipelineLimits.writers``): refine the mask's edges
  when the handle does (``refine``), render the output and encode it (PNG/WebP/JPEG
  in memory); then one **reporter** thread writes each
  encoded output atomically and calls ``on_result``, one item at a time.

Inputs are read and outputs written by the storage that holds them
(:mod:`~unetbg.removal.storage`: a local folder, or an S3 prefix).

Pillow and numpy release the GIL while decoding, resizing and encoding, and torch
does while it computes, so threads are enough. The reporter keeps the bookkeeping
exactly as in the serial loop: an output is renamed into place only right before its
``on_result``, so when ``on_result`` raises (a cancelled job), every item reported
succeeded has its file and no other output appears: encoded outputs not yet reported
are dropped unwritten. ``on_result`` runs on the reporter thread (never two at once),
so slow bookkeeping such as a database write per image never stalls the network.

Memory is bounded in images: at most ``read_ahead`` images are being read or wait
for the network, ``batch_size`` are in the network and ``write_behind`` wait to be
rendered, encoded or written — ``read_ahead + batch_size + write_behind`` images
(each its decoded pixels and probability map) in all. The defaults,
``2 × batch_size`` each, keep the network fed without holding more than about five
batches. ``PipelineLimits(serial=True)`` runs every stage in the calling thread, one
after the other: the same functions, so the same bytes (the reference in the tests).
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from unetbg.images import ImageError
from unetbg.removal.outputs import (
    OutputExistsError,
    OutputOptions,
    encode_output,
    load_background,
    render_output,
)
from unetbg.removal.planning import SKIP_EXISTS, PlannedItem
from unetbg.removal.presence import no_person, person_share
from unetbg.removal.storage import storage_for
from unetbg.removal.threads import PipelineLimits, PipelineStats, executors, lower_priority


@dataclass(frozen=True)
class ItemResult:
    """Outcome for one item: ``ok``, else ``error`` (a skip reason for skipped items).

    ``person_share``: for a written output, the share of its pixels that show the
    person (:func:`~unetbg.removal.presence.person_share`); ``None`` otherwise.
    """

    ok: bool
    error: str | None
    seconds: float
    source: Path | None = None
    output: Path | None = None
    skipped: bool = False
    person_share: float | None = None

    @property
    def no_person(self) -> bool:
        """Written, but the output shows no person (:func:`~unetbg.removal.presence.no_person`)."""
        return self.ok and no_person(self.person_share)


@dataclass
class BatchSummary:
    """What a folder run did; ``results`` align with ``items``."""

    items: list[PlannedItem]
    results: list[ItemResult]
    seconds: float

    @property
    def processed(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def failed(self) -> int:
        return sum(not r.ok and not r.skipped for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self.results)

    @property
    def no_person(self) -> int:
        return sum(r.no_person for r in self.results)


class MaskPredictor(Protocol):
    """What :func:`process_images` needs from a model handle (``ModelInference`` is one).

    A handle may also offer ``prepare(rgb) -> prepared`` and
    ``predict_prepared(list[prepared]) -> list[probability]``; then letterboxing runs
    in the reader threads, ahead of the network. With those, ``refine(rgb,
    probability) -> probability`` too, if it has one, finishes what
    ``predict_prepared`` returned (``predict_arrays`` returns finished ones), in the
    writer threads.
    """

    batch_size: int

    def predict_arrays(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """``H×W×3`` uint8 RGB arrays -> ``H×W`` float32 person probabilities."""
        ...


@dataclass
class _Ticket:
    """One item on its way to the reporter: a result, or a pending encode."""

    index: int
    result: ItemResult | None = None
    encoded: Future | None = None
    spent: float = 0.0  # seconds so far (read + share of the batch)
    holds: bool = False  # counts against write_behind


class _Reporter:
    """Writes encoded outputs and calls ``on_result``, one item at a time, in order.

    Pipelined it runs on its own thread; serial, ``put`` settles the ticket at once.
    After ``on_result`` raises, later tickets are dropped: their outputs are never
    written and their ``on_result`` never called.
    """

    def __init__(self, items, options, results, on_result, stats, limit, serial, nice) -> None:
        self.items, self.options, self.results = items, options, results
        self.on_result, self.stats, self.serial, self.nice = on_result, stats, serial, nice
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.room = threading.Semaphore(limit)
        self.queue: queue.SimpleQueue[_Ticket | None] = queue.SimpleQueue()
        self.thread = None
        if not serial:
            self.thread = threading.Thread(target=self._run, name="unetbg-reporter", daemon=True)
            self.thread.start()

    def acquire(self) -> bool:
        """Wait for room in the write-behind queue; ``False`` once stopped."""
        while not self.room.acquire(timeout=0.1):
            if self.stop.is_set():
                return False
        if self.stop.is_set():
            self.room.release()
            return False
        return True

    def put(self, ticket: _Ticket) -> None:
        if self.serial:
            self._settle(ticket)
        else:
            self.queue.put(ticket)

    def close(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()

    def _run(self) -> None:
        lower_priority(self.nice)
        while (ticket := self.queue.get()) is not None:
            self._settle(ticket)

    def _settle(self, ticket: _Ticket) -> None:
        try:
            if self.stop.is_set():
                if ticket.encoded is not None:
                    ticket.encoded.cancel()
                return
            result = ticket.result or self._write(ticket)
            self.results[ticket.index] = result
            if self.on_result is not None:
                self.on_result(self.items[ticket.index], result)
        except BaseException as exc:  # on_result's own exception ends the run (cancel)
            self.error = exc
            self.stop.set()
        finally:
            if ticket.holds:
                self.room.release()
                self.stats.hold(-1)

    def _write(self, ticket: _Ticket) -> ItemResult:
        item = self.items[ticket.index]
        t0 = time.perf_counter()
        try:
            data, encode_s, share = ticket.encoded.result()
            t0 -= encode_s
            storage_for(item.output).write(item, data)
        except OutputExistsError:
            # Appeared after planning (another run, the user): theirs, not replaced.
            spent = ticket.spent + time.perf_counter() - t0
            return ItemResult(False, SKIP_EXISTS, spent, item.source, item.output, True)
        except Exception as exc:
            spent = ticket.spent + time.perf_counter() - t0
            return _failure(item, exc, spent, "cannot write output: ")
        spent = ticket.spent + time.perf_counter() - t0
        return ItemResult(True, None, spent, item.source, item.output, person_share=share)


def _read(handle: Any, item: PlannedItem, max_pixels: int | None) -> tuple:
    """``(rgb, prepared, seconds, None)``, or ``(None, None, seconds, error)``."""
    t0 = time.perf_counter()
    try:
        rgb = storage_for(item.source).read_image(item.source, max_pixels)
        prepare = getattr(handle, "prepare", None)
        prepared = prepare(rgb) if prepare is not None else None
    except Exception as exc:
        return None, None, time.perf_counter() - t0, exc
    return rgb, prepared, time.perf_counter() - t0, None


def _encode(rgb, prob, options: OutputOptions, background, refine) -> tuple[bytes, float, float]:
    """``(encoded output, seconds, person share)``; the share of the refined (final)
    probability, the one the output shows."""
    t0 = time.perf_counter()
    if refine is not None:
        prob = refine(rgb, prob)
    data = encode_output(render_output(rgb, prob, options, background), options)
    return data, time.perf_counter() - t0, person_share(prob)


def _prepared_path(handle: Any) -> tuple[Callable | None, Callable | None]:
    """The handle's ``predict_prepared`` and ``refine`` when images are prepared in the
    reader threads (it has ``prepare`` too), else ``(None, None)``."""
    predict = getattr(handle, "predict_prepared", None)
    if predict is None or getattr(handle, "prepare", None) is None:
        return None, None
    return predict, getattr(handle, "refine", None)


def _predict(
    handle: Any, prepared: Callable | None, loaded: list[tuple]
) -> list[np.ndarray | BaseException]:
    """Probabilities for a batch, by ``prepared`` (the handle's ``predict_prepared``, see
    :func:`_prepared_path`) or else ``predict_arrays``; on failure one image at a time,
    so only culprits fail."""

    def run(rows):
        if prepared is not None:
            return list(prepared([r[2] for r in rows]))
        return list(handle.predict_arrays([r[1] for r in rows]))

    try:
        return run(loaded)
    except Exception:
        probs: list[np.ndarray | BaseException] = []
        for row in loaded:
            try:
                probs.append(run([row])[0])
            except Exception as exc:
                probs.append(exc)
        return probs


def process_images(
    model_handle: MaskPredictor,
    items: Sequence[PlannedItem],
    options: OutputOptions,
    on_result: Callable[[PlannedItem, ItemResult], None] | None = None,
    max_pixels: int | None = None,
    limits: PipelineLimits | None = None,
    stats: PipelineStats | None = None,
) -> list[ItemResult]:
    """Read, predict (in batches of ``model_handle.batch_size``), render and write.

    Returns one :class:`ItemResult` per item, in order. Skipped items come back as
    ``skipped`` with their reason; unreadable images, failed predictions and failed
    writes become per-item errors and never stop the batch. ``on_result(item,
    result)`` is called as each item finishes (progress, printing; skipped items
    first), from one thread at a time; an exception it raises stops the run and is
    raised here, after the items already reported (see the module docstring).
    ``limits`` sets the threads and queue depths (:class:`PipelineLimits`; default:
    the handle's ``limits`` attribute if it has one), ``stats``
    receives what the run held and timed. A bad ``options.background``, or items
    planned for another format than ``options.format``, raise before anything is
    processed.
    """
    _check_planned_format(items, options)
    background = load_background(options)
    limits = limits or getattr(model_handle, "limits", None) or PipelineLimits()
    stats = stats if stats is not None else PipelineStats()
    batch_size = max(1, int(getattr(model_handle, "batch_size", 8)))
    # Fewer images read ahead than a batch would shrink every batch: at least one batch.
    read_ahead = max(limits.read_ahead or 2 * batch_size, batch_size)
    write_behind = limits.write_behind or 2 * batch_size
    stats.bound = read_ahead + batch_size + write_behind
    results: list[ItemResult | None] = [None] * len(items)
    reporter = _Reporter(
        items, options, results, on_result, stats, write_behind, limits.serial, limits.helper_nice
    )
    readers, writers = executors(limits)
    run = _Run(model_handle, items, options, background, max_pixels, reporter, stats)
    run.start(readers, writers, batch_size, read_ahead)
    finished = False
    try:
        run.loop()
        finished = True
    finally:
        if not finished or reporter.stop.is_set():
            reporter.stop.set()
            run.cancel_reading()
        reporter.close()
        readers.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True, cancel_futures=True)
    if reporter.error is not None:
        raise reporter.error
    return [r for r in results if r is not None]


def _check_planned_format(items: Sequence[PlannedItem], options: OutputOptions) -> None:
    wrong = [it for it in items if it.output is not None and it.output.suffix != options.suffix]
    if wrong:
        raise ValueError(
            f"{wrong[0].output} was planned for another format than {options.format}; "
            "plan with the same output format"
        )


class _Run:
    """One :func:`process_images` run, as its steps: report the skipped items, keep the
    readers ``read_ahead`` images ahead, take a batch of what they read, run it through
    the network, and hand each probability to the writers (render, encode, write)."""

    def __init__(self, handle, items, options, background, max_pixels, reporter, stats) -> None:
        self.handle, self.items, self.options = handle, items, options
        self.background, self.max_pixels = background, max_pixels
        self.reporter, self.stats = reporter, stats
        self.predict_prepared, self.refine = _prepared_path(handle)
        self.todo: collections.deque[int] = collections.deque()
        self.reading: collections.deque[tuple[int, Future]] = collections.deque()

    def start(self, readers: Executor, writers: Executor, batch_size: int, read_ahead: int):
        """Report the skipped items first; the others are to do, in order."""
        self.readers, self.writers = readers, writers
        self.batch_size, self.read_ahead = batch_size, read_ahead
        for index, item in enumerate(self.items):
            if item.skip_reason is not None:
                result = ItemResult(False, item.skip_reason, 0.0, item.source, item.output, True)
                self.reporter.put(_Ticket(index, result))
            else:
                self.todo.append(index)

    def loop(self) -> None:
        self.top_up()
        while self.reading and not self.reporter.stop.is_set():
            loaded = self.next_batch()
            self.top_up()  # read the next batch while this one is in the network
            if loaded:
                self.predict_and_write(loaded)

    def top_up(self) -> None:
        while self.todo and len(self.reading) < self.read_ahead and not self.reporter.stop.is_set():
            index = self.todo.popleft()
            self.stats.hold()
            future = self.readers.submit(_read, self.handle, self.items[index], self.max_pixels)
            self.reading.append((index, future))

    def next_batch(self) -> list[tuple]:
        """Up to ``batch_size`` images read, in order; an unreadable one is reported."""
        loaded = []
        t0 = time.perf_counter()
        while self.reading and len(loaded) < self.batch_size:
            index, future = self.reading.popleft()
            rgb, prepared, read_s, error = future.result()
            if error is not None:
                self.stats.hold(-1)
                self.reporter.put(_Ticket(index, _failure(self.items[index], error, read_s)))
                continue
            loaded.append((index, rgb, prepared, read_s))
        self.stats.wait_read_s += time.perf_counter() - t0
        return loaded

    def predict_and_write(self, loaded: list[tuple]) -> None:
        t0 = time.perf_counter()
        probs = _predict(self.handle, self.predict_prepared, loaded)
        share = (time.perf_counter() - t0) / len(loaded)
        self.stats.network_s += time.perf_counter() - t0
        self.stats.batches += 1
        for (index, rgb, _, read_s), prob in zip(loaded, probs, strict=True):
            spent = read_s + share
            if isinstance(prob, BaseException):
                self.stats.hold(-1)
                failure = _failure(self.items[index], prob, spent, "prediction failed: ")
                self.reporter.put(_Ticket(index, failure))
            elif self.reporter.acquire():
                encoded = self.writers.submit(
                    _encode, rgb, prob, self.options, self.background, self.refine
                )
                self.reporter.put(_Ticket(index, None, encoded, spent, holds=True))
            else:
                self.stats.hold(-1)

    def cancel_reading(self) -> None:
        for _, future in self.reading:
            future.cancel()


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ImageError):
        return exc.reason
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"


def _failure(item: PlannedItem, exc: BaseException, seconds: float, prefix: str = "") -> ItemResult:
    return ItemResult(False, prefix + _error_text(exc), seconds, item.source, item.output)
