"""Starting and stopping jobs: dispatch, cancel, and the embedded runner.

Two modes, chosen by :attr:`Settings.embedded`:

* **embedded** (no ``UNETBG_BROKER_URL``): :func:`dispatch` runs the very same Celery
  tasks in this process (``Task.apply``), one after the other; :func:`start_job` does
  so in an :class:`EmbeddedRunner` thread, and :func:`wait_for_run` fails the job
  when that thread dies before the job ends;
* **broker**: :func:`dispatch` enqueues them on Redis. It is always called after the
  transaction that recorded the job has committed, so a worker can never pick up an
  id whose rows it cannot see yet.

Tasks are looked up **by name** on the Celery app (``unetbg.workers.app``), never
imported: the job service does not depend on the task code, which depends on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from unetbg.db.models import FINAL_JOB_STATES, Job, JobItem
from unetbg.jobs.errors import JobError
from unetbg.jobs.liveness import heartbeat_fresh
from unetbg.jobs.queries import get_job, job_view, wait_for_job
from unetbg.jobs.records import (
    OPEN_ITEM_STATES,
    SENT_WHILE_RECORDING,
    end_job,
    fail_job,
    move_items,
    reopen_job,
    settle_remove_dir,
)
from unetbg.jobs.sending import (
    Sending,
    next_round,
    send_tasks,
    task_ids,
    task_ids_of_every_round,
)
from unetbg.jobs.store import db_session, find_job
from unetbg.jobs.views import JobView
from unetbg.settings import Settings, get_settings, mask_url

log = logging.getLogger(__name__)


def _pending_chunks(
    session: Session, job_id: str, states: tuple[str, ...] = OPEN_ITEM_STATES
) -> dict[int, list[int]]:
    rows = session.execute(
        select(JobItem.chunk, JobItem.id)
        .where(JobItem.job_id == job_id, JobItem.state.in_(states))
        .order_by(JobItem.chunk, JobItem.id)
    )
    chunks: dict[int, list[int]] = {}
    for chunk, item_id in rows:
        chunks.setdefault(chunk, []).append(item_id)
    return chunks


def dispatch(
    job_id: str, settings: Settings | None = None, chunks: dict[int, list[int]] | None = None
) -> list[str]:
    """Start a recorded job: enqueue its tasks (broker) or run them here (embedded).

    Call it after the job's transaction committed (the ``create_*`` functions commit
    before returning). Returns the enqueued task ids (empty in embedded mode, where
    this returns only when the job is final, or ``chunks`` are done). ``chunks``
    (chunk number -> item ids) starts just those chunks of a remove-dir job: the ones
    ``remove-dir --watch`` adds (:func:`unetbg.jobs.watched.add_watched_files`);
    by default every chunk with open items, except those its submitter queued as it
    recorded them (:mod:`unetbg.jobs.recording`): sent once, not twice.
    """
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = find_job(session, job_id)
        if job.state in FINAL_JOB_STATES:
            return []
        if chunks is None:
            chunks = _pending_chunks(session, job.id) if _unsent(job, settings) else {}
        sending = Sending.of(job)
    if settings.embedded:
        run_inline(sending, chunks, settings)
        return []

    try:
        sent = send_tasks(sending, chunks, settings)
    except Exception as exc:  # broker unreachable after the publish retries
        # Stop what was sent (the cancel flag), fail the rest.
        fail_job(
            sending.id, f"could not enqueue on {mask_url(settings.broker_url)}: {exc}", settings
        )
        raise JobError(
            f"job {sending.id} was recorded but could not be queued: broker "
            f"{mask_url(settings.broker_url)} unreachable ({exc}); it is marked failed"
        ) from exc
    log.info("job %s: enqueued %d task(s)", sending.id, len(sent))
    return sent


def _unsent(job: Job, settings: Settings) -> bool:
    """Whether ``job`` is a remove-dir job whose open chunks are to be sent now: not
    those its submitter queued as it recorded them (:mod:`unetbg.jobs.recording`),
    until a new send round (``retry``) makes them work to send again."""
    if job.kind != "remove_dir":
        return False
    queued = (job.params or {}).get(SENT_WHILE_RECORDING) and not job.send_round
    return settings.embedded or not queued


def resend_lost(queued: set[str], settings: Settings | None = None) -> list[str]:
    """Send again the unstarted work of every unfinished job whose message is not among
    ``queued`` (the task ids waiting in the broker's queues); returns the task ids sent.

    A worker calls it when its broker connection comes back (:mod:`unetbg.tasks.
    recovery`): a broker restart can lose messages no queue shows any more. Unstarted
    means a remove-dir chunk's images nobody claimed (``pending``), or a training or
    evaluation job still ``queued``. A copy of a message that was not lost after all does
    no harm: a chunk claims only images nobody live holds, and a duplicate of a live run
    is deferred. Raises what the broker raises when it cannot be reached.
    """
    settings = settings or get_settings()
    plans: list[tuple[Sending, dict[int, list[int]]]] = []
    with db_session(settings) as session:
        open_jobs = session.scalars(
            select(Job).where(Job.state.not_in(FINAL_JOB_STATES)).order_by(Job.created_at)
        ).all()
        for job in open_jobs:
            view = Sending.of(job)  # a lost message is sent again under its own id
            if job.kind == "remove_dir":
                unclaimed = _pending_chunks(session, job.id, states=("pending",))
                lost = {
                    c: ids
                    for c, ids in unclaimed.items()
                    if queued.isdisjoint(task_ids_of_every_round(job, [c]))
                }
                if lost:
                    plans.append((view, lost))
            elif job.state == "queued" and queued.isdisjoint(task_ids_of_every_round(job)):
                plans.append((view, {}))
    sent: list[str] = []
    for view, chunks in plans:
        sent += send_tasks(view, chunks, settings)
    return sent


def run_inline(
    job: Sending, chunks: dict[int, list[int]], settings: Settings | None = None
) -> None:
    """Embedded mode: run the job's Celery tasks in this process, in order.

    ``Task.apply`` runs the task through Celery's tracer exactly as a worker does
    (the base class's failure handling included), just without a broker.
    """
    from unetbg.workers.app import EVALUATE_TASK, REMOVE_CHUNK_TASK, TRAIN_TASK

    if job.kind == "remove_dir":
        for chunk, item_ids in chunks.items():
            if get_job(job.id, settings).final:  # cancelled/failed while earlier chunks ran
                break
            (task_id,) = task_ids(job, [chunk])
            run_task_here(REMOVE_CHUNK_TASK, [job.id, item_ids], task_id, settings)
        return
    name = TRAIN_TASK if job.kind == "train" else EVALUATE_TASK
    run_task_here(name, [job.id], task_ids(job)[0], settings)


def run_task_here(name: str, args: list, task_id: str, settings: Settings | None = None):
    """Run the job task ``name`` in this process and return its ``EagerResult``: the one
    in-process runner (embedded mode, and ``unetbg train``'s foreground job whatever
    the broker). ``Task.apply`` runs it through Celery's tracer exactly as a worker does
    (the base class's failure handling included), just without a broker."""
    from unetbg.workers.app import get_app

    app = get_app(settings)
    # The app's ``include`` names the task modules; importing them registers the
    # tasks on it, whose config (JSON, routing) also applies to eager runs.
    app.loader.import_default_modules()
    return app.tasks[name].apply(args=args, task_id=task_id)


# ---------------------------------------------------------------------------------------
# The embedded runner


class EmbeddedRunner(threading.Thread):
    """The thread that runs one job in this process (embedded mode).

    ``error`` names what ended it early, if anything did (the exception is raised
    again, so the thread hook still logs it).
    """

    def __init__(self, job_id: str, settings: Settings) -> None:
        super().__init__(name=f"job-{job_id}")
        self.job_id, self.settings = job_id, settings
        self.error: str | None = None

    def run(self) -> None:
        try:
            dispatch(self.job_id, self.settings)
        except BaseException as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            raise


def start_job(job_id: str, settings: Settings | None = None) -> EmbeddedRunner | None:
    """Dispatch ``job_id``: enqueue it (broker; returns ``None``) or run it in an
    :class:`EmbeddedRunner` thread of this process (embedded; returns the thread)."""
    settings = settings or get_settings()
    if not settings.embedded:
        dispatch(job_id, settings)
        return None
    runner = EmbeddedRunner(job_id, settings)
    runner.start()
    return runner


class _RunnerDied(Exception):
    """The embedded runner thread ended while its job was not final."""


def wait_for_run(
    job_id: str,
    runner: threading.Thread | None,
    on_update: Callable[[JobView], None] | None = None,
    poll_s: float = 1.0,
) -> JobView:
    """:func:`~unetbg.jobs.queries.wait_for_job`, and the rule for a runner that died.

    ``runner`` is the thread running the job in this process (embedded mode; any
    thread with an optional ``error`` attribute), or ``None``. If it ends while the
    job is not final, nothing else will finish the job: it is failed, naming the
    runner's error, with its pending and running items (only this process ran them),
    and returned as it is then.
    """

    def update(view: JobView) -> None:
        if on_update is not None:
            on_update(view)
        if runner is not None and not view.final and not runner.is_alive():
            raise _RunnerDied

    try:
        return wait_for_job(job_id, on_update=update, poll_s=poll_s)
    except _RunnerDied:
        error = getattr(runner, "error", None) or "no error was recorded"
        fail_job(
            job_id,
            f"the job's runner in this process stopped before the job ended: {error}",
            item_states=("pending", "running"),
        )
        return get_job(job_id)


# ---------------------------------------------------------------------------------------
# Retry


def retry_job(job_id: str, settings: Settings | None = None) -> str:
    """Make a job's unfinished work ready to be sent again (``unetbg retry``); returns the
    job's id, to :func:`dispatch` (or :func:`start_job`) next.

    For messages lost on the way (a Redis restarted without persistence) and for work that
    ended badly. A remove-dir job's failed and cancelled images become pending again and
    every chunk with open images is then sent again (a chunk claims only images nobody live
    holds, so a message that was not lost after all does no harm). A training or
    evaluation job still ``queued`` is sent again (a duplicate of a live run is deferred);
    one that stopped is reopened, and a training run resumes from its ``last_model.pth``.
    A succeeded job has nothing to retry (:class:`JobError`).
    """
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = find_job(session, job_id, for_update=True)
        if job.state == "succeeded":
            raise JobError(f"job {job.id} succeeded: nothing to retry")
        if job.kind == "remove_dir":
            again = move_items(
                session,
                job.id,
                JobItem.state.in_(("failed", "cancelled")),
                "pending",
                error=None,
                claimed_by=None,
            )
            if job.state in FINAL_JOB_STATES and again:
                reopen_job(job)  # (a new send round too)
            else:
                # New task ids: a cancel may have revoked the old ones (workers keep them).
                next_round(job)
        elif job.state in FINAL_JOB_STATES or (
            job.state == "running" and not heartbeat_fresh(job, settings)
        ):
            reopen_job(job)  # its worker is gone: the next attempt takes over
        else:
            next_round(job)
        return job.id


# ---------------------------------------------------------------------------------------
# Cancel


def cancel_job(job_id: str, settings: Settings | None = None) -> JobView:
    """Request cancellation; returns the job as it is afterwards.

    Items not yet started become ``cancelled`` now and their queued chunk tasks are
    revoked (without terminate). Running work stops cooperatively: a chunk at its
    next batch of images, training at its next step, keeping its last checkpoint.
    A final job is left as it is.
    """
    settings = settings or get_settings()
    revoke: list[str] = []
    with db_session(settings) as session:
        job = find_job(session, job_id, for_update=True)
        if job.state in FINAL_JOB_STATES:
            return job_view(session, job)
        job.cancel_requested = True
        if job.kind == "remove_dir":
            pending = session.execute(
                select(JobItem.chunk)
                .where(JobItem.job_id == job.id, JobItem.state == "pending")
                .distinct()
            ).scalars()
            revoke = task_ids_of_every_round(job, sorted(c for c in pending if c is not None))
            move_items(
                session,
                job.id,
                JobItem.state == "pending",
                "cancelled",
                error="cancelled before it started",
            )
            settle_remove_dir(session, job)
        elif job.state == "queued" or not heartbeat_fresh(job, settings):
            # Nobody is running it (or its worker is gone): nothing else will finish it.
            revoke = task_ids_of_every_round(job)
            end_job(job, "cancelled")
        view = job_view(session, job)
    if revoke and not settings.embedded:
        from unetbg.workers.app import get_app

        # No terminate: a running chunk finishes its current image and stops itself.
        get_app(settings).control.revoke(revoke)
    return view
