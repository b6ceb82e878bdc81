"""Is the worker of a job still there? Worker identity, heartbeats, watchers.

A task records ``host:pid`` (:func:`worker_identity`) on the job it runs and on each
image it claims, and refreshes ``Job.heartbeat_at`` while it runs. A process on this
host is checked by its pid; one on another host by how recently it reported.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from unetbg.db.models import Job, JobItem, utcnow
from unetbg.jobs.views import JobView, aware
from unetbg.settings import Settings

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
    return not _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped: a killed worker whose parent
    (or, in a container, an init that never reaps) has not collected it yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux), or it ended just now
        return False
    # Field 3, after the command name in parentheses (which may hold spaces).
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


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
