"""Figures over all jobs, for monitoring (``unetbg serve``'s ``/metrics``): jobs by kind
and state, images by state, images finished lately, and the broker's queue depths.

Each call reads the database (or Redis) now: a scrape every few seconds costs a few
``GROUP BY`` queries, and the figures are right whichever process did the work.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select

from unetbg.db.models import Job, JobItem, utcnow
from unetbg.jobs.broker import broker_client
from unetbg.jobs.store import db_session
from unetbg.settings import Settings, get_settings


def job_counts(settings: Settings | None = None) -> dict[tuple[str, str], int]:
    """How many jobs there are of each ``(kind, state)`` (only pairs that occur)."""
    with db_session(settings or get_settings()) as session:
        rows = session.execute(
            select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
        )
        return {(kind, state): count for kind, state, count in rows}


def item_counts_by_state(settings: Settings | None = None) -> dict[str, int]:
    """How many remove-dir images there are in each state, over every job."""
    with db_session(settings or get_settings()) as session:
        rows = session.execute(select(JobItem.state, func.count()).group_by(JobItem.state))
        return dict(rows.all())


def items_finished_since(seconds: float, settings: Settings | None = None) -> int:
    """Images that succeeded or failed in the last ``seconds`` (their last update)."""
    since = utcnow() - timedelta(seconds=seconds)
    with db_session(settings or get_settings()) as session:
        return session.scalar(
            select(func.count())
            .select_from(JobItem)
            .where(JobItem.state.in_(("succeeded", "failed")), JobItem.updated_at >= since)
        )


def queue_depths(settings: Settings | None = None) -> dict[str, int]:
    """Messages waiting in each Celery queue on the broker (Redis ``LLEN``); empty in
    embedded mode, where nothing is queued. Raises ``redis.RedisError`` when the broker
    cannot be reached."""
    settings = settings or get_settings()
    if settings.embedded:
        return {}
    from unetbg.workers.app import QUEUES

    with broker_client(settings, timeout_s=2) as client:
        return {queue: int(client.llen(queue)) for queue in QUEUES}


def queued_task_ids(settings: Settings | None = None) -> set[str]:
    """Task ids of the messages waiting in the broker's queues (Redis ``LRANGE``; those a
    worker took but has not acknowledged are not among them). Empty in embedded mode.
    Raises ``redis.RedisError`` when the broker cannot be reached."""
    settings = settings or get_settings()
    if settings.embedded:
        return set()
    from unetbg.workers.app import QUEUES

    with broker_client(settings, timeout_s=5) as client:
        messages = [json.loads(raw) for queue in QUEUES for raw in client.lrange(queue, 0, -1)]
    # Celery's message protocol 2 keeps the task id in the headers; anything else on the
    # list (a foreign message) names no task of ours.
    return {m["headers"]["id"] for m in messages if isinstance(m.get("headers"), dict)}
