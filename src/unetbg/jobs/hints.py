"""Why a job may be waiting: notes for ``unetbg status`` and ``--wait``.

Only in broker mode, and only for a job not yet final:

* its images (or, for a whole-job task never started, the job) have waited unclaimed,
  with nothing of the job moving, for longer than the visibility window
  (``UNETBG_VISIBILITY_TIMEOUT``): their queued messages are probably lost, e.g. to a
  Redis restarted without persistence, and ``unetbg retry JOB`` sends them again;
* after :data:`QUEUE_HINT_AFTER_S` seconds still ``queued``: whether any worker consumes
  its queue (Celery's inspect ``active_queues``), naming the queue and the command that
  starts a worker for it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from unetbg.db.models import JobItem, utcnow
from unetbg.jobs.store import db_session
from unetbg.jobs.views import JobView, aware
from unetbg.settings import Settings, get_settings

#: A job queued for less long than this is not worth a broadcast to the workers.
QUEUE_HINT_AFTER_S = 5.0


def waiting_hints(
    job: JobView, settings: Settings | None = None, now: datetime | None = None
) -> list[str]:
    """Notes on why ``job`` is still waiting (empty when nothing looks wrong)."""
    settings = settings or get_settings()
    if settings.embedded or job.final:
        return []
    now = now or utcnow()
    hints = _unclaimed(job, settings, now)
    if job.state == "queued" and (now - job.created_at).total_seconds() >= QUEUE_HINT_AFTER_S:
        hints += _no_consumer(job, settings)
    return hints


def _unclaimed(job: JobView, settings: Settings, now: datetime) -> list[str]:
    window = settings.visibility_timeout
    since = now - timedelta(seconds=window)
    if job.kind == "remove_dir":
        # Only while nothing of the job moves: in a long job on busy workers, the last
        # chunks may well wait longer than the window behind the others. The job's row
        # answers first (its counters; its heartbeat, beaten by every claim and image):
        # only a job that looks stalled has its items read, so a status call of a
        # million-image job that runs reads no item.
        if not job.items.get("pending") or aware(job.heartbeat_at or job.created_at) >= since:
            return []
        with db_session(settings) as session:
            latest, waiting = session.execute(
                select(
                    func.max(JobItem.updated_at),
                    func.count().filter(JobItem.state == "pending"),
                ).where(JobItem.job_id == job.id)
            ).one()
        stale = latest is not None and aware(latest) < since
        what = f"{waiting} image(s) of job {job.id} have" if waiting and stale else None
    else:  # a whole-job task: only a job never started tells (a reopened one is newer)
        fresh = job.state == "queued" and job.attempts == 0 and job.created_at < since
        what = f"job {job.id} has" if fresh else None
    if what is None:
        return []
    return [
        f"{what} waited unclaimed for longer than the visibility window ({window} s, "
        "UNETBG_VISIBILITY_TIMEOUT): the queued messages are probably lost (a Redis "
        f"restarted without persistence?); send them again with `unetbg retry {job.id}`"
    ]


def _no_consumer(job: JobView, settings: Settings) -> list[str]:
    # Here, not at the top: reading jobs needs no Celery.
    from unetbg.workers.app import queue_consumers, queue_for

    queue = queue_for(job.kind)
    try:
        consumers = queue_consumers(queue, settings)
    except Exception as exc:  # the broker is down: say so rather than guess
        return [f"could not ask the workers which queues they consume: {exc}"]
    if consumers:
        return []
    return [
        f"no worker consumes the '{queue}' queue, so job {job.id} waits: start one with "
        f"`unetbg worker --queues {queue}` (with the same UNETBG_BROKER_URL and "
        "UNETBG_DATABASE_URL)"
    ]
