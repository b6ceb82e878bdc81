"""Reading jobs back: one job, recent jobs, a job's items, checkpoints and epoch figures,
and waiting for a job to end. Everything comes back as a ``views`` snapshot.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from unetbg.db.models import JOB_KINDS, JOB_STATES, Checkpoint, EpochMetric, Job, JobItem
from unetbg.jobs.errors import JobError
from unetbg.jobs.lost import mark_lost_jobs
from unetbg.jobs.records import (
    PROCESSED_ITEM_STATES,
    item_counts,
    no_person_count,
    no_person_filter,
)
from unetbg.jobs.store import db_session, find_job
from unetbg.jobs.views import CheckpointView, EpochView, ItemView, JobView, aware
from unetbg.settings import Settings, get_settings


def job_view(session: Session, job: Job) -> JobView:
    """Snapshot of ``job``; a remove-dir job's progress and item counts from its items."""
    if job.kind != "remove_dir":
        return JobView.of(job)
    # Chunks commit each image but settle the job's progress once per chunk; the
    # item counts are always current, so progress is taken from them.
    counts = item_counts(session, job.id)
    view = JobView.of(job, counts, no_person_count(session, job.id))
    done = sum(counts.get(state, 0) for state in PROCESSED_ITEM_STATES)
    return dataclasses.replace(view, progress_done=done)


def get_job(job_id: str, settings: Settings | None = None) -> JobView:
    """One job with its item counts; raises :class:`JobNotFound`."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        return job_view(session, find_job(session, job_id))


def list_jobs(
    state: str | None = None,
    kind: str | None = None,
    limit: int = 20,
    settings: Settings | None = None,
) -> list[JobView]:
    """Most recent jobs first, optionally filtered."""
    settings = settings or get_settings()
    if state is not None and state not in JOB_STATES:
        raise JobError(f"unknown state {state!r}; valid states: {', '.join(JOB_STATES)}")
    if kind is not None and kind not in JOB_KINDS:
        raise JobError(f"unknown kind {kind!r}; valid kinds: {', '.join(JOB_KINDS)}")
    query = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if state:
        query = query.where(Job.state == state)
    if kind:
        query = query.where(Job.kind == kind)
    with db_session(settings) as session:
        return [job_view(session, job) for job in session.scalars(query)]


def list_items(
    job_id: str,
    states: Sequence[str] | None = None,
    settings: Settings | None = None,
    no_person: bool = False,
) -> list[ItemView]:
    """The items of a remove-dir job (all, or only those in ``states``; with
    ``no_person`` only the written ones whose output shows no person)."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = find_job(session, job_id)
        query = select(JobItem).where(JobItem.job_id == job.id).order_by(JobItem.id)
        if states:
            query = query.where(JobItem.state.in_(states))
        if no_person:
            query = query.where(no_person_filter())
        return [
            ItemView(
                i.id,
                i.source_path,
                i.output_path,
                i.state,
                i.error,
                i.duration_s,
                i.chunk,
                i.attempts or 0,
                i.person_share,
                _no_person(i),
            )
            for i in session.scalars(query)
        ]


def _no_person(item: JobItem) -> bool:
    from unetbg.removal.presence import no_person  # lazily, as in records.no_person_filter

    return item.state == "succeeded" and no_person(item.person_share)


def list_checkpoints(
    job_id: str | None = None, settings: Settings | None = None
) -> list[CheckpointView]:
    """Registered checkpoints, newest first (of one job when ``job_id`` is given)."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        query = select(Checkpoint).order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
        if job_id:
            query = query.where(Checkpoint.job_id == find_job(session, job_id).id)
        return [
            CheckpointView(
                c.id,
                c.job_id,
                c.path,
                c.epoch,
                c.metrics,
                c.sha256,
                c.is_best,
                aware(c.created_at),
            )
            for c in session.scalars(query)
        ]


def list_epoch_metrics(job_id: str, settings: Settings | None = None) -> list[EpochView]:
    """A training job's per-epoch figures, by epoch then split."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = find_job(session, job_id)
        query = (
            select(EpochMetric)
            .where(EpochMetric.job_id == job.id)
            .order_by(EpochMetric.epoch, EpochMetric.split)
        )
        return [
            EpochView(m.epoch, m.split, m.loss, m.iou, m.dice, m.pixel_accuracy, m.lr)
            for m in session.scalars(query)
        ]


def wait_for_job(
    job_id: str,
    on_update: Callable[[JobView], None] | None = None,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
    settings: Settings | None = None,
) -> JobView:
    """Poll the database until the job is final; ``on_update`` sees every snapshot.

    Polling the database (not the broker) keeps working across a Redis restart, and
    :func:`mark_lost_jobs` runs each round so a dead worker cannot make this hang.
    Raises ``TimeoutError`` after ``timeout_s``.
    """
    settings = settings or get_settings()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    # Lost-worker checks write; a tenth of the heartbeat timeout is often enough.
    check_every = max(1.0, settings.heartbeat_timeout / 10)
    checked = float("-inf")
    while True:
        if time.monotonic() - checked >= check_every:
            mark_lost_jobs(settings)
            checked = time.monotonic()
        view = get_job(job_id, settings)
        if on_update is not None:
            on_update(view)
        if view.final:
            return view
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {view.state} after {timeout_s} s")
        time.sleep(poll_s)
