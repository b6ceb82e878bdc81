"""When a file that appeared or changed is complete enough to read: a pure rule, fed with
file-system events and answered with the stat of each file (no watchdog, no clock).

A file is *ready* when nobody has it open (opens minus closes, as the events tell) and
its size and modification time did not change between two looks, and either

* a close-after-write event came after its last change (Linux inotify: the writer is
  done), or
* nothing changed for ``settle_s`` seconds: files moved in (a rename brings no close)
  and systems whose events say nothing of opening and closing.

A file held open longer than :data:`STALLED_OPEN_S` without any event counts as closed:
an event queue that overflowed must not hold a file back for ever (were it still being
written, its next change makes it ready again and the newer content replaces the output).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: ``(size, mtime_ns)``: what identifies a version of a file's content.
Signature = tuple[int, int]
#: Seconds after which an open without a matching close is no longer believed.
STALLED_OPEN_S = 600.0


def signature(path: Path) -> Signature | None:
    """``path``'s :data:`Signature`, or ``None`` when it is not a regular file now."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_size, info.st_mtime_ns


@dataclass
class _Track:
    changed_at: float
    written_and_closed: bool = False
    seen: Signature | None = None
    seen_since: float = 0.0


class Readiness:
    """Files that changed, until each is ready (module docstring). Times are seconds
    on one monotonic clock, given by the caller."""

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._tracks: dict[Path, _Track] = {}
        #: Open handles per path, with the time of its last open or close event; kept
        #: for files not (yet) tracked too, as a rewrite opens before it changes anything.
        self._opens: dict[Path, tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._tracks)

    def changed(self, path: Path, now: float) -> None:
        """``path`` was created, written, moved in or touched."""
        track = self._tracks.setdefault(path, _Track(now))
        track.changed_at, track.written_and_closed = now, False

    def opened(self, path: Path, now: float) -> None:
        count, _ = self._opens.get(path, (0, now))
        self._opens[path] = (count + 1, now)

    def closed(self, path: Path, now: float, wrote: bool) -> None:
        """A handle on ``path`` was closed; ``wrote``: it had been opened for writing."""
        count, _ = self._opens.pop(path, (0, now))
        if count > 1:
            self._opens[path] = (count - 1, now)
        track = self._tracks.get(path)
        if wrote and track is not None:
            track.written_and_closed = True

    def forget(self, path: Path) -> None:
        """``path`` was deleted or moved away."""
        self._tracks.pop(path, None)
        self._opens.pop(path, None)

    def due(
        self, now: float, look: Callable[[Path], Signature | None] = signature
    ) -> list[tuple[Path, Signature]]:
        """The tracked files ready now, with the signature they were judged on; they are
        no longer tracked (a later change tracks them again)."""
        ready = []
        for path, track in list(self._tracks.items()):
            current = look(path)
            if current is None:
                self.forget(path)
                continue
            if current != track.seen:
                track.seen, track.seen_since = current, now
                continue
            count, last = self._opens.get(path, (0, now))
            if count > 0 and now - last < STALLED_OPEN_S:
                continue
            quiet = now - max(track.seen_since, track.changed_at)
            if track.written_and_closed or quiet >= self.settle_s:
                ready.append((path, current))
                self.forget(path)
        return ready
