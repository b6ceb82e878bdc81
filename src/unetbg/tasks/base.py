"""``JobTask``: the base class of every unetbg Celery task.

It owns what task bodies should not repeat: the settings, the job id in every log
line, claiming a job (with the redelivery rules below), the heartbeat, and recording
a failure on the job when the body raises. What it writes, it writes through the job
service (:mod:`unetbg.jobs.claims`): no task opens a database session of its own.

Redelivery rules for a whole-job task (training, evaluation), see docs/jobs.md:

* the job is final (done, failed, cancelled) -> the message is dropped, except a
  ``lost`` failure, which is treated as ``running`` under its last worker;
* the job is ``running`` under another worker that is alive (same host: its pid
  exists; another host: its heartbeat is fresher than ``heartbeat_timeout``) ->
  the message is *deferred* (retried after ``heartbeat_timeout``) instead of
  starting a second copy of the run;
* otherwise (first delivery, or the previous worker died) -> this worker claims it,
  ``attempts`` goes up and the run resumes from its last checkpoint.

A run that finds another worker recorded as the job's owner (it was taken over) stops
at its next check and writes nothing more (:meth:`JobTask.stop_reason`,
:func:`unetbg.jobs.claims.end_owned_job`).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from unetbg.jobs import JobError, JobView, claims
from unetbg.settings import Settings, get_settings

_current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("job", default=None)


class _JobLogAdapter(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"job {_current_job.get() or '-'}: {msg}", kwargs


log = _JobLogAdapter(logging.getLogger("unetbg.tasks"), {})


class Deferred(JobError):
    """A delivery that must not run now because a live worker holds the work.

    Raised instead of a retry where there is no broker to retry through (``apply``,
    embedded mode); the job's record is left untouched.
    """


class JobOutcome(Exception):
    """Raised by a task *after* it recorded its job's outcome, when that outcome is not a
    success, so that Flower (which sees only task events) does not show it as one:
    :class:`ImagesFailed` as FAILURE with this exception (its "Failed" filter then lists
    our failures), :class:`JobCancelled` as REVOKED.

    Listed in :attr:`JobTask.throws` (logged in one line, no traceback); never retried
    (no autoretry), and the message is acknowledged (``task_acks_on_failure_or_timeout``),
    so it is not redelivered. :meth:`JobTask.on_failure` records nothing more.
    """


class JobCancelled(JobOutcome, Ignore):
    """The job was cancelled (or failed meanwhile) and this task stopped or did not run.

    A cancel is no failure: Celery *ignores* it (an ``Ignore``: the message is
    acknowledged, no ``task-failed`` event), and :meth:`JobTask.__call__` sends a
    ``task-revoked`` event instead, so Flower shows the task REVOKED, as the queued chunks
    the cancel revoked, and the worker's metrics count it as ``cancelled``
    (:attr:`outcome`; issue 20, item 14).
    """

    #: The ``outcome`` label of ``unetbg_worker_tasks_total`` (:mod:`unetbg.workers.metrics`).
    outcome = "cancelled"


class ImagesFailed(JobOutcome):
    """Some images of this chunk failed; each one's reason is on its item."""


class JobTask(Task):
    """Base for tasks whose first argument is a job id."""

    #: Outcomes recorded on the job before being raised (see :class:`JobOutcome`).
    throws = (JobOutcome,)

    #: Seconds between heartbeats; a fraction of ``heartbeat_timeout`` (at least 1 s).
    heartbeat_divisor = 10

    def __call__(self, job_id: str, *args: Any, **kwargs: Any) -> Any:
        token = _current_job.set(job_id)
        try:
            return super().__call__(job_id, *args, **kwargs)
        except JobCancelled:
            self._announce_cancelled()
            raise
        finally:
            _current_job.reset(token)

    def _announce_cancelled(self) -> None:
        """Tell Flower (task events) that this task was revoked by its job's cancel."""
        if self.request.is_eager or self.request.called_directly:
            return  # embedded mode: nobody listens to events
        try:
            self.send_event("task-revoked", terminated=False, signum=None, expired=False)
        except Exception:  # a broker blip: Flower keeps the task STARTED, nothing worse
            self.log.exception("could not send the task-revoked event")

    # -- context --------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        # Read per use: tests and `unetbg worker` set the environment before tasks run.
        return get_settings()

    @property
    def log(self) -> logging.LoggerAdapter:
        return log

    def cancel_requested(self, job_id: str) -> bool:
        """Whether ``unetbg cancel`` was asked for this job."""
        return claims.cancel_state(job_id, self.settings)[0]

    def raise_if_cancelled(self, job_id: str) -> None:
        """Raise :class:`JobCancelled` when this task did not run because its job was
        cancelled (or failed meanwhile): Flower then shows it as such, not as a success."""
        cancelled, state = claims.cancel_state(job_id, self.settings)
        if cancelled:
            raise JobCancelled(f"job {job_id} is {state} (cancel requested); not run")

    def stop_reason(self, job_id: str) -> str | None:
        """Why this run must stop now: ``"cancelled"``, ``"taken over"`` (another worker
        claimed the job, believing this one dead) or ``None`` to go on."""
        return claims.stop_reason(job_id, self.settings)

    # -- claiming -------------------------------------------------------------------

    def claim_job(self, job_id: str) -> JobView | None:
        """Take ``job_id`` for this worker, or return ``None`` when it must not run here.

        Raises celery's ``Retry`` to defer a duplicate delivery (module docstring).
        """
        claim = claims.claim_job(job_id, self.settings)
        if claim.holder is not None:
            self._defer(claim.holder, self.settings)
        return claim.job

    def _defer(self, other: str | None, settings: Settings) -> None:
        if self.request.is_eager or self.request.called_directly:
            raise Deferred(f"job is running in worker {other}; not starting a second copy")
        self.log.warning(
            "still running in live worker %s; deferring this delivery by %d s",
            other,
            settings.heartbeat_timeout,
        )
        # A retry is a new message (this one is acked), checked again later: if that
        # worker has died by then, the run is taken over and resumed.
        raise self.retry(countdown=settings.heartbeat_timeout, max_retries=None)

    # -- heartbeat ------------------------------------------------------------------

    @contextmanager
    def heartbeat(self, job_id: str) -> Iterator[None]:
        """Refresh ``Job.heartbeat_at`` from a thread while the body runs.

        A thread (not the training callbacks) so that a long validation pass or a
        slow first batch does not look like a dead worker.
        """
        interval = max(1.0, self.settings.heartbeat_timeout / self.heartbeat_divisor)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    claims.beat(job_id, self.settings)
                except Exception:  # a DB blip must not kill the run; the next beat retries
                    self.log.exception("heartbeat failed")

        thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    # -- failure --------------------------------------------------------------------

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Record the error on the job so `unetbg status` shows why it failed."""
        job_id = args[0] if args else kwargs.get("job_id")
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, Deferred):  # the live worker owns the job: record nothing
            self.log.warning("not run here: %s", exc)
            return
        if isinstance(exc, JobOutcome):  # recorded already, raised only for Flower
            return
        # Celery calls this after __call__ has returned: name the job in the log again.
        token = _current_job.set(job_id)
        try:
            self.record_failure(job_id, args, kwargs, message)
        except Exception:
            self.log.exception("could not record the failure of %s", task_id)
        finally:
            self.log.error("task %s failed: %s", task_id, message)
            _current_job.reset(token)

    def record_failure(self, job_id: str, args, kwargs, message: str) -> None:
        """Mark the job failed; subclasses with items override this."""
        claims.fail_claimed_job(job_id, message, self.settings)


#: Seconds between reads of the cancel flag (``should_stop`` is asked every step).
CANCEL_POLL_S = 1.0


class CancelFlag:
    """``should_stop`` for ``fit`` and evaluation, read at most every ``poll_s``.

    True once the job is cancelled or taken over by another worker (``reason`` says
    which): a run that lost its claim must stop, or two copies share the run folder.
    """

    def __init__(self, task: JobTask, job_id: str, poll_s: float = CANCEL_POLL_S) -> None:
        self.task, self.job_id, self.poll_s = task, job_id, poll_s
        self._checked = float("-inf")
        self.reason: str | None = None

    @property
    def requested(self) -> bool:
        """Whether the run has been told to stop."""
        return self.reason is not None

    def __call__(self) -> bool:
        now = time.monotonic()
        if self.reason is None and now - self._checked >= self.poll_s:
            self._checked = now
            self.reason = self.task.stop_reason(self.job_id)
        return self.reason is not None
