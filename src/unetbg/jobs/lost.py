"""Work whose worker died: sent again by the live workers, or reported lost.

Two callers, two duties:

* every worker, every :func:`recovery_interval` seconds (:mod:`unetbg.tasks.recovery`),
  calls :func:`recover_lost_work`: the images a dead claimant held go back to
  ``pending`` and their chunk is sent again under a new task id, so the job finishes on
  the remaining workers without anyone running ``unetbg retry``. Dead means: on this
  host, its pid is gone (known at once); on another host, it has not reported for
  ``heartbeat_timeout``. Each image is claimed at most
  :data:`~unetbg.jobs.claims.MAX_ITEM_ATTEMPTS` times; after that it fails as ``lost``.
  The dead chunk's message is not acknowledged and would come back only after the
  broker's visibility timeout (hours): a duplicate then, which finds its images done;
* ``unetbg status``, ``jobs``, every ``--wait`` and the HTTP API call
  :func:`mark_lost_jobs`, so that nobody waits for ever on work no live worker will
  take over: it fails what has been silent for longer than the workers would wait.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from unetbg.db.models import Job, JobItem, utcnow
from unetbg.durable import remove_stale_temporaries
from unetbg.jobs.claims import MAX_ITEM_ATTEMPTS, lost_item_error
from unetbg.jobs.liveness import (
    LOST_PREFIX,
    claimant_fresh,
    heartbeat_fresh,
    watcher_gone,
    worker_alive,
)
from unetbg.jobs.records import (
    RECORDING,
    end_job,
    end_watch,
    fail_recording,
    lock_job,
    moves,
    settle_remove_dir,
    shift_counts,
    watching,
)
from unetbg.jobs.sending import Sending, next_round, send_tasks
from unetbg.jobs.store import db_session
from unetbg.jobs.views import iso
from unetbg.settings import Settings, get_settings

log = logging.getLogger(__name__)


def recovery_interval(settings: Settings) -> float:
    """Seconds between two :func:`recover_lost_work` rounds of a worker: a tenth of the
    heartbeat timeout, at most 10 s (a dead pid on this host is seen within that)."""
    return max(1.0, min(10.0, settings.heartbeat_timeout / 10))


def _claimant_dead(
    session: Session, job: Job, claimant: str | None, settings: Settings, now: datetime
) -> bool:
    alive = worker_alive(claimant)
    if alive is not None:
        return not alive
    return not claimant_fresh(session, job, claimant, settings, now)


def recover_lost_work(settings: Settings | None = None, now: datetime | None = None) -> list[str]:
    """Send again the images of every dead claimant (broker mode); the task ids sent.

    Within one transaction per job (its row locked) the images go back to ``pending``
    (leftover temporary files of the dead writer removed) or, at their last attempt,
    fail; the job's send round goes up; the chunks are sent after the commit. Two
    workers doing this at once: the second finds the images pending, and sends nothing.
    """
    settings = settings or get_settings()
    if settings.embedded:
        return []
    now = now or utcnow()
    with db_session(settings) as session:
        ids = session.scalars(
            select(Job.id).where(Job.kind == "remove_dir", Job.state == "running")
        ).all()
    sent: list[str] = []
    for job_id in ids:
        with db_session(settings) as session:
            job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
            if job is None or job.state != "running":
                continue
            chunks = _release_dead_claims(session, job, settings, now)
            if not chunks:
                continue
            next_round(job)  # new ids: the dead chunk's own message is still unacknowledged
            sending = Sending.of(job)
        sent += send_tasks(sending, chunks, settings)
    return sent


def _release_dead_claims(
    session: Session, job: Job, settings: Settings, now: datetime
) -> dict[int, list[int]]:
    """Make the images of ``job``'s dead claimants pending again, or fail those at their
    last attempt; returns the chunks to send again (chunk -> item ids)."""
    lock_job(session, job.id)  # before its items: their counters move with them
    items = session.scalars(
        select(JobItem).where(JobItem.job_id == job.id, JobItem.state == "running")
    ).all()
    dead = {
        claimant: _claimant_dead(session, job, claimant, settings, now)
        for claimant in {item.claimed_by for item in items}
    }
    lost = [item for item in items if dead[item.claimed_by]]
    if not lost:
        return {}
    by_claimant = Counter(item.claimed_by for item in lost)
    again = [item for item in lost if (item.attempts or 0) < MAX_ITEM_ATTEMPTS]
    # The dead writer cannot finish a temporary file any more: nothing else writes them.
    removed = remove_stale_temporaries(item.output_path for item in again if item.output_path)
    chunks: dict[int, list[int]] = {}
    delta = moves(["running"] * len(again), "pending")
    delta.update(moves(["running"] * (len(lost) - len(again)), "failed"))
    shift_counts(session, job.id, delta)
    for item in lost:
        if item in again:
            item.state, item.claimed_by, item.error = "pending", None, None
            chunks.setdefault(item.chunk or 0, []).append(item.id)
        else:
            item.state, item.error = "failed", lost_item_error(item.claimed_by, item.attempts)
        item.updated_at = now
    log.warning(
        "job %s: worker(s) %s died holding %d image(s): sending %d again (chunk(s) %s), "
        "removed %d leftover temporary file(s), %d failed after %d attempts",
        job.id,
        ", ".join(f"{c} ({n})" for c, n in sorted(by_claimant.items(), key=str)),
        len(lost),
        len(again),
        ", ".join(map(str, sorted(chunks))),
        removed,
        len(lost) - len(again),
        MAX_ITEM_ATTEMPTS,
    )
    settle_remove_dir(session, job)
    return chunks


def mark_lost_jobs(settings: Settings | None = None, now: datetime | None = None) -> list[str]:
    """Fail running work whose worker is gone for good; return the ids of the jobs concerned.

    A train/evaluate job is lost when its heartbeat is older than
    ``Settings.heartbeat_timeout`` and its worker is not known to be alive (a process
    on this host whose pid exists is alive: never the caller's own run, as in
    embedded mode). For remove-dir, the ``running`` images of each claimant that is
    not alive and has not reported for that long are failed (``lost: …``) and the
    job settles, so ``--wait`` never hangs on a dead worker; with a broker, for twice
    that long: the live workers send such images again after one timeout
    (:func:`recover_lost_work`), so they are failed only when no worker is left to.
    Re-running the same remove-dir then redoes exactly those images.
    A watched remove-dir job whose watching process is gone (:func:`watcher_gone`)
    stops being watched and settles (:func:`unetbg.jobs.records.end_watch`), so a
    crashed ``remove-dir --watch`` never leaves its job open.
    """
    settings = settings or get_settings()
    now = now or utcnow()
    lost = []
    with db_session(settings) as session:
        lost += _end_dead_watches(session, settings, now)
        lost += _fail_abandoned_recordings(session)
        running = session.scalars(select(Job).where(Job.state == "running")).all()
        item_settings = settings
        if not settings.embedded:
            item_settings = dataclasses.replace(
                settings, heartbeat_timeout=2 * settings.heartbeat_timeout
            )
        for job in running:
            if job.kind == "remove_dir":
                if _fail_silent_items(session, job, item_settings, now):
                    lost.append(job.id)
            elif (
                not heartbeat_fresh(job, settings, now)
                and worker_alive(job.worker_host) is not True
            ):
                # Heartbeat age, unless the pid is known alive: a killed child's message
                # is redelivered within seconds and must find the job still running.
                end_job(
                    job,
                    "failed",
                    f"{LOST_PREFIX}worker {job.worker_host} stopped reporting "
                    f"(last heartbeat {iso(job.heartbeat_at)}); a redelivered task resumes it",
                )
                lost.append(job.id)
    lost = list(dict.fromkeys(lost))  # a lost watch may also have lost items
    for job_id in lost:
        log.warning("job %s: worker lost", job_id)
    return lost


def _fail_abandoned_recordings(session: Session) -> list[str]:
    """Fail the remove-dir jobs whose submitting process died while it recorded their
    items (killed during a large folder's recording): the rest of the folder will never
    be recorded, so the job could never end. Its chunks queued so far may have run
    meanwhile (:mod:`unetbg.jobs.recording`); the images not yet started fail. Only a
    submitter on this host can be known dead."""
    recording = session.scalars(
        select(Job).where(Job.kind == "remove_dir", Job.state.in_(("queued", "running")))
    ).all()
    failed = []
    for job in recording:
        by = (job.params or {}).get(RECORDING)
        if not isinstance(by, str) or worker_alive(by) is not False:
            continue
        reason = (
            f"{LOST_PREFIX}the submitting process {by} ended before every image was "
            "recorded; run the same remove-dir again"
        )
        fail_recording(session, job, reason)
        failed.append(job.id)
    return failed


def _end_dead_watches(session: Session, settings: Settings, now: datetime) -> list[str]:
    open_dirs = session.scalars(
        select(Job).where(Job.kind == "remove_dir", Job.state.in_(("queued", "running")))
    ).all()
    ended = []
    for job in open_dirs:
        if watching(job) and watcher_gone(job, settings, now):
            watch = job.params["watch"]
            end_watch(
                session,
                job,
                lost=f"{LOST_PREFIX}the watching process {watch.get('by')} stopped "
                f"(last beat {watch.get('beat')})",
            )
            ended.append(job.id)
    return ended


def _fail_silent_items(session: Session, job: Job, settings: Settings, now: datetime) -> bool:
    """Fail the running images of ``job``'s claimants silent for ``heartbeat_timeout``."""
    lock_job(session, job.id)  # before its items: their counters move with them
    items = session.scalars(
        select(JobItem).where(JobItem.job_id == job.id, JobItem.state == "running")
    ).all()
    gone: dict[str | None, bool] = {}
    for claimant in {item.claimed_by for item in items}:
        # A dead pid alone is not enough: its redelivered chunk (seconds away) or a live
        # worker's recovery takes the images over and must find them still running.
        gone[claimant] = worker_alive(claimant) is not True and not claimant_fresh(
            session, job, claimant, settings, now
        )
    stale = [item for item in items if gone[item.claimed_by]]
    shift_counts(session, job.id, moves(["running"] * len(stale), "failed"))
    for item in stale:
        item.state = "failed"
        item.error = (
            f"{LOST_PREFIX}worker {item.claimed_by} stopped reporting "
            f"(no update since {iso(item.updated_at)})"
        )
    if stale:
        settle_remove_dir(session, job)
    return bool(stale)
