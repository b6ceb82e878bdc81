"""Embedded mode: the one thread that runs a watched job's chunks in this process."""

from __future__ import annotations

import queue
import threading

from unetbg.jobs import dispatch
from unetbg.settings import Settings


class ChunkRunner(threading.Thread):
    """Runs the job's first chunks (everything pending when it starts), then each batch
    of chunks :meth:`submit` hands it, one at a time, until :meth:`finish`.

    One thread for every chunk: a chunk task treats an image claimed by its own process
    as a dead attempt's (a pool process runs one task at a time), so two chunks of one
    process must never run at once. The model stays loaded between chunks
    (``unetbg.tasks.remove.model_cache`` keeps it per process). ``error`` names what
    ended the thread early, as :class:`unetbg.jobs.EmbeddedRunner`'s does, for
    :func:`unetbg.jobs.wait_for_run`.
    """

    def __init__(self, job_id: str, settings: Settings) -> None:
        # A daemon: should the watching loop itself crash, the process can still exit.
        super().__init__(name=f"watch-{job_id}", daemon=True)
        self.job_id, self.settings = job_id, settings
        self.error: str | None = None
        self._todo: queue.SimpleQueue = queue.SimpleQueue()

    def submit(self, chunks: dict[int, list[int]]) -> None:
        self._todo.put(chunks)

    def finish(self) -> None:
        """Stop once the chunks submitted so far are done."""
        self._todo.put(None)

    def run(self) -> None:
        try:
            dispatch(self.job_id, self.settings)
            while (chunks := self._todo.get()) is not None:
                dispatch(self.job_id, self.settings, chunks)
        except BaseException as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            raise
