"""The model behind ``POST /api/remove``: loaded once per checkpoint file version, fed by
one thread.

Request threads decode the upload and encode the answer (Pillow releases the GIL while
it does); between the two, each puts its image on a bounded queue and waits. One
inference thread takes up to ``batch_size`` queued images at a time and runs them
through the network together, so concurrent requests share forward passes and the
model is never run (nor loaded) by two threads at once. A full queue refuses at once
(:class:`QueueFull`: 503 with ``Retry-After``) instead of letting waits grow unbounded.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from unetbg.inference import ModelCache
from unetbg.removal import RunOptions

log = logging.getLogger(__name__)

#: Checkpoints kept loaded at once; asking for another unloads the least recently used.
MAX_MODELS = 2


class QueueFull(Exception):
    """More images wait for the model than the queue holds."""


@dataclass
class _Request:
    rgb: np.ndarray
    checkpoint: str
    result: Future = field(default_factory=Future)


class RemovalQueue:
    """The bounded queue of images waiting for the model, and its inference thread,
    which runs each checkpoint as ``run`` says (:class:`unetbg.inference.ModelCache`:
    a checkpoint rewritten in place is loaded again)."""

    def __init__(self, models: ModelCache, size: int, run: RunOptions) -> None:
        self.models, self.run, self.batch_size = models, run, run.batch_size
        self._queue: queue.Queue[_Request] = queue.Queue(maxsize=size)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-inference", daemon=True)

    @property
    def depth(self) -> int:
        """Images waiting now (not counting the batch being run)."""
        return self._queue.qsize()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Let the thread finish its batch, then fail whatever still waits."""
        self._stopping.set()
        self._thread.join(timeout=60)
        self._fail_waiting()

    def probabilities(self, rgb: np.ndarray, checkpoint: str) -> tuple[np.ndarray, str]:
        """The person probability of ``rgb`` by ``checkpoint`` (an absolute path), once
        the inference thread has run it, and the backend that ran it (``auto``
        resolved); raises :class:`QueueFull` at once when full."""
        if self._stopping.is_set():
            raise QueueFull("the server is shutting down")
        request = _Request(rgb, checkpoint)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} images already wait for the model") from None
        return request.result.result()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                # A timeout, to notice stop() while idle; an image arriving ends it at once.
                batch = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for checkpoint in dict.fromkeys(r.checkpoint for r in batch):
                self._predict([r for r in batch if r.checkpoint == checkpoint], checkpoint)

    def _predict(self, requests: list[_Request], checkpoint: str) -> None:
        try:
            model = self.models.get(checkpoint, self.run)
            probs = model.predict_arrays([r.rgb for r in requests])
        except Exception as exc:  # a bad checkpoint, out of memory: every waiter is told
            log.exception("inference on %d image(s) failed", len(requests))
            for request in requests:
                request.result.set_exception(exc)
            return
        for request, prob in zip(requests, probs, strict=True):
            request.result.set_result((prob, model.backend_name))

    def _fail_waiting(self) -> None:
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            request.result.set_exception(QueueFull("the server is shutting down"))
