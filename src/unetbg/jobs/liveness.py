"""Is the worker of a job still there? Worker identity, heartbeats, lost jobs.

A task records ``host:pid`` (:func:`worker_identity`) on the job it runs and on each
image it claims, and refreshes ``Job.heartbeat_at`` while it runs. A process on this
host is checked by its pid; one on another host by how recently it reported.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from unetbg.db.models import Job, JobItem, utcnow
from unetbg.jobs.records import end_job, end_watch, settle_remove_dir, watching
from unetbg.jobs.store import db_session
from unetbg.jobs.views import JobView, aware, iso
from unetbg.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: ``Job.error`` of a job whose worker stopped sending heartbeats; a redelivered
#: training message may still resume such a job (see ``unetbg.tasks.base``).
LOST_PREFIX = "lost: "


def worker_identity() -> str:
    """``host:pid`` of this process, stored on the job it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_alive(identity: str | None) -> bool | None:
    """Whether the process named by :func:`worker_identity` runs; ``None`` if unknowable.

    Only a process on this host can be checked; for another host the heartbeat decides.
    """
    if not identity or ":" not in identity:
        return None
    host, _, pid = identity.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def heartbeat_fresh(job: Job | JobView, settings: Settings, now: datetime | None = None) -> bool:
    """Whether the job's heartbeat is younger than ``Settings.heartbeat_timeout``."""
    beat = aware(job.heartbeat_at)
    if beat is None:
        return False
    now = now or utcnow()
    return now - beat < timedelta(seconds=settings.heartbeat_timeout)


def claimant_fresh(
    session: Session,
    job: Job,
    claimant: str | None,
    settings: Settings,
    now: datetime | None = None,
) -> bool:
    """Whether the chunk attempt ``claimant`` (``JobItem.claimed_by``) reported lately.

    Lately means within ``heartbeat_timeout``: an item outcome it wrote, or the job's
    heartbeat while it is the job's latest claimant. ``None`` (an unknown claimant)
    counts any item outcome and the job's heartbeat. Used where the pid cannot be
    checked (another host).
    """
    now = now or utcnow()
    if (claimant is None or job.worker_host == claimant) and heartbeat_fresh(job, settings, now):
        return True
    # Only what a chunk wrote: pending/skipped rows keep their creation time.
    query = select(func.max(JobItem.updated_at)).where(
        JobItem.job_id == job.id, JobItem.state.in_(("running", "succeeded", "failed"))
    )
    if claimant is not None:
        query = query.where(JobItem.claimed_by == claimant)
    latest = aware(session.scalar(query))
    return latest is not None and now - latest < timedelta(seconds=settings.heartbeat_timeout)


def watcher_gone(job: Job, settings: Settings, now: datetime | None = None) -> bool:
    """Whether the ``remove-dir --watch`` process of a watched job is gone.

    Its pid, on this host, decides at once (nothing redelivers a watch, so there is no
    reason to wait); on another host, its beat (``params["watch"]["beat"]``, refreshed
    by :func:`unetbg.jobs.watched.beat_watch`) older than ``heartbeat_timeout``.
    """
    watch = (job.params or {}).get("watch") or {}
    alive = worker_alive(watch.get("by"))
    if alive is not None:
        return not alive
    beat = aware(datetime.fromisoformat(watch["beat"])) if watch.get("beat") else None
    now = now or utcnow()
    return beat is None or now - beat >= timedelta(seconds=settings.heartbeat_timeout)


def mark_lost_jobs(settings: Settings | None = None, now: datetime | None = None) -> list[str]:
    """Fail running work whose worker is gone; return the ids of the jobs concerned.

    A train/evaluate job is lost when its heartbeat is older than
    ``Settings.heartbeat_timeout`` and its worker is not known to be alive (a process
    on this host whose pid exists is alive: never the caller's own run, as in
    embedded mode). For remove-dir, the ``running`` images of each claimant that is
    not alive and has not reported for that long are failed (``lost: …``) and the
    job settles, so ``--wait`` never hangs on a dead worker.
    Re-running the same remove-dir then redoes exactly those images.
    A watched remove-dir job whose watching process is gone (:func:`watcher_gone`)
    stops being watched and settles (:func:`unetbg.jobs.records.end_watch`), so a
    crashed ``remove-dir --watch`` never leaves its job open.
    """
    settings = settings or get_settings()
    now = now or utcnow()
    lost = []
    with db_session(settings) as session:
        open_dirs = session.scalars(
            select(Job).where(Job.kind == "remove_dir", Job.state.in_(("queued", "running")))
        ).all()
        for job in open_dirs:
            if watching(job) and watcher_gone(job, settings, now):
                watch = job.params["watch"]
                end_watch(
                    session,
                    job,
                    lost=f"{LOST_PREFIX}the watching process {watch.get('by')} stopped "
                    f"(last beat {watch.get('beat')})",
                )
                lost.append(job.id)
        running = session.scalars(select(Job).where(Job.state == "running")).all()
        for job in running:
            if job.kind == "remove_dir":
                items = session.scalars(
                    select(JobItem).where(JobItem.job_id == job.id, JobItem.state == "running")
                ).all()
                gone: dict[str | None, bool] = {}
                for claimant in {item.claimed_by for item in items}:
                    # A dead pid alone is not enough: its redelivered chunk (seconds
                    # away) takes the images over and must find them still running.
                    gone[claimant] = worker_alive(claimant) is not True and not claimant_fresh(
                        session, job, claimant, settings, now
                    )
                stale = [item for item in items if gone[item.claimed_by]]
                if not stale:
                    continue
                for item in stale:
                    item.state = "failed"
                    item.error = (
                        f"{LOST_PREFIX}worker {item.claimed_by} stopped reporting "
                        f"(no update since {iso(item.updated_at)})"
                    )
                settle_remove_dir(session, job)
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
