"""Jobs run by this process (embedded mode: no broker), watched and stopped with it.

:func:`unetbg.jobs.start_job` runs an embedded job in an
:class:`~unetbg.jobs.EmbeddedRunner` thread. A watcher thread per job applies
:func:`unetbg.jobs.wait_for_run`'s rule (a runner that dies before its job ends fails
the job: nothing else would finish it), and at shutdown the jobs still running are
cancelled and given a moment to stop at their next image or step.
"""

from __future__ import annotations

import logging
import threading

from unetbg import jobs
from unetbg.settings import Settings

log = logging.getLogger(__name__)

#: Seconds shutdown waits for cancelled jobs to stop (a chunk stops at its next batch).
STOP_WAIT_S = 30


class Runners:
    """The embedded jobs this server started."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runners: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, job_id: str) -> None:
        """Dispatch ``job_id``: to the workers (broker) or to a thread here (embedded)."""
        runner = jobs.start_job(job_id, self.settings)
        if runner is None:
            return
        with self._lock:
            self._runners[job_id] = runner
        threading.Thread(
            target=self._watch, args=(job_id, runner), name=f"watch-{job_id}", daemon=True
        ).start()

    def _watch(self, job_id: str, runner: threading.Thread) -> None:
        try:
            jobs.wait_for_run(job_id, runner)
        except Exception:  # the database went away: the runner's own record stands
            log.exception("watching job %s failed", job_id)
        finally:
            with self._lock:
                self._runners.pop(job_id, None)

    def stop(self) -> None:
        """Cancel the jobs still running here and wait a little for them to stop."""
        with self._lock:
            running = dict(self._runners)
        for job_id in running:
            try:
                jobs.cancel_job(job_id, self.settings)
            except Exception:
                log.exception("cancelling job %s at shutdown failed", job_id)
        for runner in running.values():
            runner.join(STOP_WAIT_S)
