"""Why a job may be waiting: notes for ``unetbg status`` and ``--wait``.

Only in broker mode, and only for a job still ``queued``: after
:data:`QUEUE_HINT_AFTER_S` seconds, whether any worker consumes its queue (Celery's
inspect ``active_queues``), naming the queue and the command that starts a worker for it.
"""

from __future__ import annotations

from datetime import datetime

from unetbg.db.models import utcnow
from unetbg.jobs.views import JobView
from unetbg.settings import Settings, get_settings

#: A job queued for less long than this is not worth a broadcast to the workers.
QUEUE_HINT_AFTER_S = 5.0


def waiting_hints(
    job: JobView, settings: Settings | None = None, now: datetime | None = None
) -> list[str]:
    """Notes on why ``job`` is still queued (empty when nothing looks wrong)."""
    settings = settings or get_settings()
    if settings.embedded or job.state != "queued":
        return []
    waited = ((now or utcnow()) - job.created_at).total_seconds()
    if waited < QUEUE_HINT_AFTER_S:
        return []
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
