"""The loop of ``remove-dir --watch``: a folder watch feeding one open remove-dir job.

1. The watch starts *before* the job's folder scan, so a file arriving during the scan
   is seen; the scan's files are remembered with their signature (size, mtime) and are
   not queued a second time.
2. The job's first items are dispatched: run by a :class:`ChunkRunner` thread of this
   process (embedded mode) or sent to the workers (broker).
3. Every tick, the files that became ready (:class:`~unetbg.watch.readiness.Readiness`)
   with a signature not queued before are added to the job
   (:func:`unetbg.jobs.watched.add_watched_files`) and their chunks dispatched the same
   way: one item per file, queued once per content change. The job's watch beat is
   refreshed (a process that dies leaves a job that :func:`unetbg.jobs.mark_lost_jobs`
   ends), and progress is reported.
4. Ctrl-C or SIGTERM ends the watch: files not yet ready are dropped, the items already
   queued finish, and the job settles as any remove-dir job (its final state and
   counts). A second Ctrl-C (or SIGTERM) cancels what is left. The watch also ends when
   the job is cancelled from elsewhere (``unetbg cancel``) or the folder goes away.

Not watched: hidden files and folders (``.name``: our own temporary outputs among them),
names without an image extension (``.part``, ``.crdownload``, ``a.jpg~`` and other
files still being downloaded or saved), and anything under the output folder.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from unetbg import jobs
from unetbg.jobs.watched import Added, add_watched_files, beat_watch, close_watch
from unetbg.removal.planning import IMAGE_EXTENSIONS
from unetbg.settings import Settings, get_settings
from unetbg.watch.observer import FolderWatch
from unetbg.watch.readiness import Readiness, signature
from unetbg.watch.runner import ChunkRunner

#: Seconds a file's size and time must stay unchanged when no close event tells.
DEFAULT_SETTLE_S = 1.5
#: Seconds between two looks at the files that changed.
TICK_S = 0.2
#: Seconds between two progress reports (and retries of files whose item was running).
POLL_S = 0.5


class _CancelRest(Exception):
    """A second Ctrl-C or SIGTERM while the queued items finish."""


class WatchSession:
    """One ``remove-dir --watch`` run (module docstring); :meth:`run` does it all.

    ``on_update`` gets the job's snapshot about every :data:`POLL_S` seconds (the first
    one right after the job is recorded), ``on_note`` a line for people.
    """

    def __init__(
        self,
        input_dir: Path,
        output_dir: Path,
        settle_s: float = DEFAULT_SETTLE_S,
        on_update: Callable[[jobs.JobView], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.input_dir = Path(input_dir).expanduser().resolve()
        self.output_dir = Path(output_dir).expanduser().resolve()
        self.readiness = Readiness(settle_s)
        self.watch = FolderWatch(self.input_dir, self.wanted)
        self._common(on_update, on_note, settings)

    def _common(self, on_update, on_note, settings: Settings | None) -> None:
        """What every kind of watch keeps: callbacks, what was queued, signals."""
        self.settings = settings or get_settings()
        self.on_update = on_update or (lambda view: None)
        self.on_note = on_note or (lambda line: None)
        #: The signature each file was last queued with.
        self.queued: dict = {}
        #: Ready files whose item was running: added again at the next poll.
        self.waiting: dict = {}
        self.signals = 0
        self._wake = threading.Event()

    def wanted(self, path: Path) -> bool:
        """Whether ``path`` is a file to watch (module docstring)."""
        if path.is_relative_to(self.output_dir) or not path.is_relative_to(self.input_dir):
            return False
        relative = path.relative_to(self.input_dir)
        if any(part.startswith(".") for part in relative.parts):
            return False
        return path.suffix.lower() in IMAGE_EXTENSIONS

    def run(self, create_job: Callable[[], str]) -> jobs.JobView:
        """Watch, record the job (``create_job`` returns its id; the job must be recorded
        watched), process, and return the job once final."""
        with self._signals_handled():
            self._start()
            try:
                job_id = create_job()
                # The first snapshot now: the job's id is out before any other word.
                self.on_update(jobs.get_job(job_id, self.settings))
                self._remember(job_id)
                runner = None
                if self.settings.embedded:
                    runner = ChunkRunner(job_id, self.settings)
                    runner.start()
                else:
                    jobs.dispatch(job_id, self.settings)
                self.on_note(
                    f"watching {self.input_dir} for new images; Ctrl-C or SIGTERM ends job {job_id}"
                )
                try:
                    self._watch(job_id, runner)
                finally:
                    close_watch(job_id, self.settings)
                    if runner is not None:
                        runner.finish()
            finally:
                self._stop()
            return self._finish(job_id, runner)

    # -- what is watched (a folder here; an object-store prefix in watch.prefix) ------

    def _start(self) -> None:
        self.watch.start()

    def _stop(self) -> None:
        self.watch.stop()

    def _due(self, now: float) -> dict:
        """The files ready now whose content was not queued yet -> their signature."""
        self.watch.drain(self.readiness)
        return {p: s for p, s in self.readiness.due(now) if self.queued.get(p) != s}

    def _alive(self) -> bool:
        return self.watch.alive()

    def _add_to_job(self, job_id: str, candidates: dict) -> Added:
        return add_watched_files(job_id, candidates, self.settings)

    # -- the steps ------------------------------------------------------------------

    def _remember(self, job_id: str) -> None:
        for item in jobs.list_items(job_id, settings=self.settings):
            found = signature(Path(item.source_path))
            if found is not None:
                self.queued[Path(item.source_path)] = found

    def _watch(self, job_id: str, runner: ChunkRunner | None) -> None:
        beat_every = max(1.0, self.settings.heartbeat_timeout / 10)
        next_beat = next_poll = time.monotonic()
        while not self.signals:
            now = time.monotonic()
            candidates = self._due(now)
            if now >= next_poll:
                candidates = self.waiting | candidates
                self.waiting = {}
            try:
                self._add(job_id, candidates, runner)
            except jobs.JobError as exc:
                self.on_note(f"stopped watching: {exc}")
                return
            if now >= next_beat:
                if not beat_watch(job_id, self.settings):
                    self.on_note(f"stopped watching: job {job_id} was cancelled or ended")
                    return
                next_beat = now + beat_every
            if now >= next_poll:
                self.on_update(jobs.get_job(job_id, self.settings))
                next_poll = now + POLL_S
            if runner is not None and not runner.is_alive():
                return  # the job is failed below (wait_for_run), naming the runner's error
            if not self._alive():
                self.on_note(f"stopped watching: {self.input_dir} can no longer be watched")
                return
            self._wake.wait(TICK_S)
        self.on_note(
            f"stopped watching; the images already queued finish (interrupt again to "
            f"cancel them: `unetbg cancel {job_id}`)"
        )

    def _add(self, job_id: str, candidates: dict, runner: ChunkRunner | None) -> None:
        if not candidates:
            return
        added = self._add_to_job(job_id, candidates)
        busy = set(added.busy)
        self.waiting |= {path: candidates[path] for path in busy}
        self.queued |= {p: s for p, s in candidates.items() if p not in busy}
        if not added.chunks:
            return
        count = sum(len(ids) for ids in added.chunks.values())
        names = sorted(p.name for p in candidates if p not in busy and p not in added.ignored)
        shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
        self.on_note(f"added {count} image{'s' if count != 1 else ''}: {shown}")
        if runner is not None:
            runner.submit(added.chunks)
        else:
            jobs.dispatch(job_id, self.settings, added.chunks)

    def _finish(self, job_id: str, runner: ChunkRunner | None) -> jobs.JobView:
        """Wait for the job to end; a further signal cancels the rest."""
        stopped_by = self.signals

        def update(view: jobs.JobView) -> None:
            self.on_update(view)
            if self.signals > stopped_by:
                raise _CancelRest

        try:
            while True:
                try:
                    return jobs.wait_for_run(job_id, runner, on_update=update, poll_s=POLL_S)
                except _CancelRest:
                    stopped_by = self.signals
                    self.on_note(f"cancelling the rest of job {job_id} …")
                    jobs.cancel_job(job_id, self.settings)
        finally:
            if runner is not None:
                runner.join()

    @contextmanager
    def _signals_handled(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM only count (``signals``): the loop decides what they mean,
        between two steps, never in the middle of a database write."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def count(signum, frame) -> None:
            self.signals += 1
            self._wake.set()

        previous = {sig: signal.signal(sig, count) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
