"""Reading jobs back: one job, recent jobs, a job's items (whole, or a page at a time),
checkpoints and epoch figures, and waiting for a job to end. Everything comes back as a
``views`` snapshot.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from unetbg.db.models import JOB_KINDS, JOB_STATES, Checkpoint, EpochMetric, Job, JobItem
from unetbg.jobs.errors import JobError
from unetbg.jobs.lost import mark_lost_jobs
from unetbg.jobs.records import (
    PROCESSED_ITEM_STATES,
    counted,
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
    # job's counters are always current (issue 23: no count of its items), so progress
    # is taken from them.
    counts, no_person, outputs_skipped = counted(session, job.id)
    if outputs_skipped:
        counts["skipped"] = counts.get("skipped", 0) + outputs_skipped
    view = JobView.of(job, counts, no_person)
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
    job_id: str, states: Sequence[str] | None = None, settings: Settings | None = None
) -> list[ItemView]:
    """The items of a remove-dir job (all, or only those in ``states``)."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = find_job(session, job_id)
        query = select(JobItem).where(JobItem.job_id == job.id).order_by(JobItem.id)
        if states:
            query = query.where(JobItem.state.in_(states))
        return [_item_view(i) for i in session.scalars(query)]


def chosen_items(job_id: str, items: str, settings: Settings | None = None) -> list[ItemView]:
    """All the images of ``job_id`` that ``items`` (one of :data:`ITEM_FILTERS`) names, in
    one list: the small-job form of :func:`item_pages`."""
    if items not in ITEM_FILTERS:
        raise ValueError(f"items must be one of {', '.join(ITEM_FILTERS)}, got {items!r}")
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = find_job(session, job_id)
        query = select(JobItem).where(JobItem.job_id == job.id).order_by(JobItem.id)
        return [_item_view(i) for i in session.scalars(_matching(query, items))]


#: What a listing of items can show (``--items``, ``state=``): the failed images, the
#: written ones whose output shows no person, or all.
ITEM_FILTERS = ("failed", "no-person", "all")
#: Items on a page unless asked otherwise, and the most one page may hold: a page is one
#: query and one answer, so its size, not the job's, bounds their time and memory.
ITEM_PAGE_SIZE = 100
MAX_ITEM_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ItemPageRequest:
    """One page of a job's items: those ``state`` names (one of :data:`ITEM_FILTERS`)
    whose id is above ``cursor`` (``None``: from the first), at most ``limit``, by id.

    Keyset pagination: the cursor is the last id of the page before, so each page is one
    index range (``job_id, id`` or ``job_id, state, id``) however long the job, and items
    recorded or changed between pages neither shift nor repeat the ones listed.
    """

    job_id: str
    state: str = "all"
    limit: int = ITEM_PAGE_SIZE
    cursor: int | None = None

    def __post_init__(self) -> None:
        if self.state not in ITEM_FILTERS:
            raise JobError(
                f"unknown item state {self.state!r}; choose one of {', '.join(ITEM_FILTERS)}"
            )
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise JobError(f"limit must be a whole number, got {self.limit!r}")
        if not 1 <= self.limit <= MAX_ITEM_PAGE_SIZE:
            raise JobError(f"limit must be from 1 to {MAX_ITEM_PAGE_SIZE}, got {self.limit}")
        cursor = self.cursor
        if cursor is not None and (
            isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0
        ):
            raise JobError(
                f"cursor must be the next_cursor of the page before (an item id), got {cursor!r}"
            )


@dataclass(frozen=True)
class ItemPage:
    """The items of one :class:`ItemPageRequest`; ``next_cursor`` asks for the next page,
    ``None`` when this one is the last."""

    items: list[ItemView]
    next_cursor: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"items": [i.to_dict() for i in self.items], "next_cursor": self.next_cursor}


def item_page(request: ItemPageRequest, settings: Settings | None = None) -> ItemPage:
    """The page of items that ``request`` names; raises :class:`JobNotFound`."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = find_job(session, request.job_id)
        # One row more than asked says whether another page follows, without a count.
        rows = session.scalars(_page_query(job.id, request)).all()
        views = [_item_view(i) for i in rows[: request.limit]]
    more = len(rows) > request.limit
    return ItemPage(views, views[-1].id if more else None)


def item_pages(
    job_id: str, state: str = "all", settings: Settings | None = None, limit: int = ITEM_PAGE_SIZE
) -> Iterator[ItemPage]:
    """Every page of ``job_id``'s items in ``state``, read as they are asked for: one page
    in memory and one short transaction at a time, however many items the job has."""
    request = ItemPageRequest(job_id, state, limit)
    while True:
        page = item_page(request, settings)
        yield page
        if page.next_cursor is None:
            return
        request = dataclasses.replace(request, cursor=page.next_cursor)


def _page_query(job_id: str, request: ItemPageRequest):
    query = (
        select(JobItem)
        .where(JobItem.job_id == job_id)
        .order_by(JobItem.id)
        .limit(request.limit + 1)
    )
    if request.cursor is not None:
        query = query.where(JobItem.id > request.cursor)
    return _matching(query, request.state)


def _matching(query, items: str):
    """``query`` narrowed to the items that ``items`` (one of :data:`ITEM_FILTERS`) names:
    the one place a filter's name becomes SQL, for whole lists and pages alike."""
    if items == "failed":
        return query.where(JobItem.state == "failed")
    if items == "no-person":
        return query.where(no_person_filter())
    return query


def _item_view(item: JobItem) -> ItemView:
    return ItemView(
        item.id,
        item.source_path,
        item.output_path,
        item.state,
        item.error,
        item.duration_s,
        item.chunk,
        item.attempts or 0,
        item.person_share,
        _no_person(item),
    )


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
