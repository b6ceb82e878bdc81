"""The watchdog glue: events under the watched folder, handed to a :class:`Readiness`.

watchdog calls its handler in its own thread; the handler only queues the event with
its time, and :meth:`FolderWatch.drain` applies them in the caller's thread, so
:class:`~unetbg.watch.readiness.Readiness` needs no lock.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from unetbg.watch.readiness import Readiness


class _Forward(FileSystemEventHandler):
    def __init__(self, events: queue.SimpleQueue) -> None:
        self.events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.events.put((time.monotonic(), event))


class FolderWatch:
    """A recursive watch of ``folder``; only paths ``wanted`` says yes to are tracked."""

    def __init__(self, folder: Path, wanted: Callable[[Path], bool]) -> None:
        self.folder, self.wanted = folder, wanted
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._observer = Observer()
        self._observer.schedule(_Forward(self._events), str(folder), recursive=True)

    def start(self) -> None:
        """Watch from now on: events are queued until :meth:`drain` (and none is lost
        while the folder is being scanned)."""
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=10)

    def alive(self) -> bool:
        """Whether watchdog's thread still runs (it stops when the folder is deleted)."""
        return self._observer.is_alive()

    def drain(self, readiness: Readiness) -> None:
        """Apply every event queued so far to ``readiness``."""
        while True:
            try:
                at, event = self._events.get_nowait()
            except queue.Empty:
                return
            self._apply(readiness, at, event)

    def _apply(self, readiness: Readiness, at: float, event: FileSystemEvent) -> None:
        source = Path(os.fsdecode(event.src_path))
        if isinstance(event, DirCreatedEvent | DirMovedEvent):
            # A folder moved or copied in: its files may have come without events.
            folder = Path(os.fsdecode(event.dest_path or event.src_path))
            for root, _, names in os.walk(folder):
                for name in names:
                    self._changed(readiness, Path(root) / name, at)
            return
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            readiness.forget(source)
            self._changed(readiness, Path(os.fsdecode(event.dest_path)), at)
        elif isinstance(event, FileDeletedEvent):
            readiness.forget(source)
        elif not self.wanted(source):
            return
        elif isinstance(event, FileOpenedEvent):
            readiness.opened(source, at)
        elif isinstance(event, FileClosedEvent | FileClosedNoWriteEvent):
            readiness.closed(source, at, wrote=isinstance(event, FileClosedEvent))
        else:  # created, modified, attributes (a touch)
            readiness.changed(source, at)

    def _changed(self, readiness: Readiness, path: Path, at: float) -> None:
        if self.wanted(path):
            readiness.changed(path, at)
