"""What a worker writes about the work it holds: claims, heartbeats, outcomes.

The one owner of the job and item states that tasks change (issue 21): a task reads
its ids, calls these functions and reports; it issues no SQL of its own.

* A whole-job task (training, evaluation) claims its job (:func:`claim_job`), beats
  (:func:`beat`) and records its end on the row :func:`owned_job` hands back, while it
  still owns the job.
* A remove-dir chunk claims its images (:func:`claim_items`), records each outcome
  (:func:`record_item`) and closes what it leaves (:func:`close_items`).

Every claim records the claimant (``host:pid``, :func:`~unetbg.jobs.liveness.
worker_identity`). Work another claimant holds is taken over only once that claimant is
dead: same host, its pid is gone; another host, it has not reported for
``heartbeat_timeout``. An image is claimed at most :data:`MAX_ITEM_ATTEMPTS` times:
one whose workers keep dying (a photo that runs the worker out of memory) fails as
``lost`` instead of killing worker after worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from unetbg.db.models import FINAL_JOB_STATES, Checkpoint, Job, JobItem, utcnow
from unetbg.jobs.liveness import (
    LOST_PREFIX,
    claimant_fresh,
    heartbeat_fresh,
    worker_alive,
    worker_identity,
)
from unetbg.jobs.records import (
    OPEN_ITEM_STATES,
    end_job,
    jsonable,
    move_items,
    moves,
    register_checkpoint,
    settle_remove_dir,
    shift_counts,
    shows_no_person,
    upsert_epoch_metrics,
)
from unetbg.jobs.store import db_session
from unetbg.jobs.views import JobView
from unetbg.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: Claims of one image before a dying worker makes it fail (``lost``) instead of being
#: sent again: one crash is bad luck, three in a row are the image.
MAX_ITEM_ATTEMPTS = 3


def lost_item_error(claimant: str | None, attempts: int) -> str:
    """``JobItem.error`` of an image whose last claimant died and that is not sent again."""
    return (
        f"{LOST_PREFIX}worker {claimant} stopped while processing it "
        f"(attempt {attempts} of {MAX_ITEM_ATTEMPTS}; not sent again)"
    )


# ---------------------------------------------------------------------- remove-dir items


@dataclass
class ItemClaim:
    """What :func:`claim_items` took for this attempt."""

    params: dict[str, Any]
    #: ``(item id, source, output)`` of each image claimed now.
    rows: list[tuple[int, str, str]]
    #: Outputs of images taken over from a dead claimant (leftover temporaries to clear),
    #: as recorded: a path, or an ``s3://`` URL (which a Path would mangle).
    reclaimed: list[str]
    #: Claimants still alive that hold other images of this chunk.
    holders: set[str] = field(default_factory=set)


def claimant_live(
    session: Session, job: Job, claimant: str | None, settings: Settings, now: datetime
) -> bool:
    """Whether the chunk attempt ``claimant`` may still be working (see module doc)."""
    if claimant == worker_identity():
        # A pool process runs one task at a time: its own claim is a dead attempt's.
        return False
    alive = worker_alive(claimant)
    if alive is not None:
        return alive
    return claimant_fresh(session, job, claimant, settings, now)


def claim_items(
    job_id: str, item_ids: list[int], settings: Settings | None = None
) -> ItemClaim | None:
    """Claim the open images among ``item_ids`` for this attempt; ``None`` when none is
    left. A claim with no rows but ``holders`` means a live attempt holds them all."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None or job.state in FINAL_JOB_STATES:
            log.info("job %s: %s; dropping the chunk", job_id, job.state if job else "no such job")
            return None
        items = session.scalars(
            select(JobItem)
            .where(
                JobItem.job_id == job_id,
                JobItem.id.in_(item_ids),
                JobItem.state.in_(OPEN_ITEM_STATES),
            )
            .order_by(JobItem.id)
        ).all()
        now = utcnow()
        live: dict[str | None, bool] = {}
        for item in items:
            if item.state == "running" and item.claimed_by not in live:
                live[item.claimed_by] = claimant_live(session, job, item.claimed_by, settings, now)
        holders = {i.claimed_by for i in items if i.state == "running" and live[i.claimed_by]}
        # A live attempt keeps its images: it writes them, it closes them on cancel.
        items = [i for i in items if not (i.state == "running" and live[i.claimed_by])]
        if job.cancel_requested:
            shift_counts(session, job.id, moves((i.state for i in items), "cancelled"))
            for item in items:
                item.state, item.error, item.updated_at = "cancelled", "job cancelled", now
            settle_remove_dir(session, job)
            return None
        kept = _within_attempts(items, now)
        shift_counts(session, job.id, moves(["running"] * (len(items) - len(kept)), "failed"))
        items = kept
        if not items and not holders:
            log.info("job %s: chunk already done (redelivered message)", job_id)
            settle_remove_dir(session, job)
            return None
        shift_counts(session, job.id, moves((i.state for i in items), "running"))
        return _take(job, items, holders, now)


def _within_attempts(items: list[JobItem], now: datetime) -> list[JobItem]:
    """The images that may be claimed again; those a dead claimant held for the last
    allowed attempt fail as lost (the caller settles the job)."""
    kept = []
    for item in items:
        if item.state == "running" and (item.attempts or 0) >= MAX_ITEM_ATTEMPTS:
            item.state, item.updated_at = "failed", now
            item.error = lost_item_error(item.claimed_by, item.attempts)
            log.warning("job %s: image %d: %s", item.job_id, item.id, item.error)
        else:
            kept.append(item)
    return kept


def _take(job: Job, items: list[JobItem], holders: set[str], now: datetime) -> ItemClaim:
    me = worker_identity()
    # Images still "running" under a dead attempt (killed pool process, lost host): it
    # may have left a temporary file mid-write.
    reclaimed = [i.output_path for i in items if i.state == "running"]
    for item in items:
        item.state, item.claimed_by, item.updated_at = "running", me, now
        item.attempts = (item.attempts or 0) + 1
    if items:
        if job.state == "queued":
            job.state = "running"
        job.started_at = job.started_at or now
        job.worker_host, job.heartbeat_at = me, now
    rows = [(i.id, i.source_path, i.output_path) for i in items]
    return ItemClaim(dict(job.params), rows, reclaimed, holders)


def record_item(
    job_id: str,
    item_id: int,
    state: str,
    error: str | None,
    seconds: float | None,
    settings: Settings | None = None,
    person_share: float | None = None,
) -> tuple[bool, bool]:
    """Write one image's outcome if this attempt still holds it; beat the heartbeat.

    ``person_share``: of a succeeded image's output (``removal.presence``).
    Returns ``(written, cancel requested)``.
    """
    me = worker_identity()
    values = {"state": state, "error": error, "duration_s": seconds, "updated_at": utcnow()}
    with db_session(settings or get_settings()) as session:
        # The job's row first (the heartbeat locks it), as every move of its items does:
        # its counters then follow the items exactly.
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))
        written = session.execute(
            update(JobItem)
            .where(JobItem.id == item_id, JobItem.claimed_by == me, JobItem.state == "running")
            .values(**values, person_share=person_share)
        ).rowcount
        if written:
            none_seen = state == "succeeded" and shows_no_person(person_share)
            shift_counts(session, job_id, moves(["running"], state), int(none_seen))
        cancel = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
    return bool(written), bool(cancel)


def close_items(
    job_id: str, item_ids: list[int], state: str, error: str, settings: Settings | None = None
) -> None:
    """Give the images among ``item_ids`` still open here (pending, or running under this
    attempt) a final ``state`` and settle the job."""
    open_here = and_(
        JobItem.id.in_(item_ids),
        or_(
            JobItem.state == "pending",
            and_(JobItem.state == "running", JobItem.claimed_by == worker_identity()),
        ),
    )
    with db_session(settings or get_settings()) as session:
        move_items(session, job_id, open_here, state, error=error)
        job = session.get(Job, job_id)
        if job is not None:
            settle_remove_dir(session, job)


# ------------------------------------------------------------------- whole-job tasks


@dataclass(frozen=True)
class JobClaim:
    """What :func:`claim_job` decided: run ``job``, defer to the live ``holder``, or
    neither (the message is dropped)."""

    job: JobView | None = None
    holder: str | None = None


def claim_job(job_id: str, settings: Settings | None = None) -> JobClaim:
    """Take ``job_id`` (training, evaluation) for this worker, unless it must not run
    here: the rules are in :mod:`unetbg.tasks.base` and docs/jobs.md."""
    me = worker_identity()
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None:
            log.warning("job %s: no such job; dropping the message", job_id)
            return JobClaim()
        lost = job.state == "failed" and (job.error or "").startswith(LOST_PREFIX)
        if job.state in FINAL_JOB_STATES and not lost:
            log.info("job %s: already %s; dropping the redelivered message", job_id, job.state)
            return JobClaim()
        if job.cancel_requested:
            end_job(job, "cancelled")
            log.info("job %s: cancelled before it started", job_id)
            return JobClaim()
        # A lost job's worker may be alive after all (a DB outage stopped its
        # heartbeats): the same rule as for a running one, or two fits share a run_dir.
        if (job.state == "running" or lost) and job.worker_host != me:
            alive = worker_alive(job.worker_host)
            if heartbeat_fresh(job, settings) and alive is not False:
                return JobClaim(holder=job.worker_host)
            log.warning(
                "job %s: taking over from %s (alive=%s, heartbeat %s): attempt %d",
                job_id,
                job.worker_host,
                alive,
                job.heartbeat_at,
                job.attempts + 1,
            )
        now = utcnow()
        job.state, job.error, job.finished_at = "running", None, None
        job.worker_host, job.heartbeat_at = me, now
        job.started_at = job.started_at or now
        job.attempts = (job.attempts or 0) + 1
        return JobClaim(job=JobView.of(job))


def owned_job(session: Session, job_id: str) -> Job | None:
    """The job's row if this worker still owns it, ready for ``end_job``; else ``None``.

    A ``lost`` failure (``mark_lost_jobs`` saw no heartbeat for a while) is reopened:
    the owner is alive after all and its outcome is the true one.
    """
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
    if job is None or job.worker_host != worker_identity():
        log.warning(
            "job %s: taken over by %s; leaving the job to it",
            job_id,
            job.worker_host if job else None,
        )
        return None
    if job.state == "failed" and (job.error or "").startswith(LOST_PREFIX):
        log.warning("job %s: was marked lost while it ran; recording its real outcome", job_id)
        job.state, job.error, job.finished_at = "running", None, None
    return job


def note_backend(job_id: str, backend: str, settings: Settings | None = None) -> None:
    """Add ``backend``, the one a chunk of ``job_id`` runs with on this worker, to the
    job's ``params["backends"]`` (sorted, each once). The job's options keep what was
    asked (``auto`` by default); this says what ran, which can differ from worker to
    worker with what each has installed."""
    with db_session(settings or get_settings()) as session:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None or backend in job.params.get("backends", ()):
            return
        ran = sorted({*job.params.get("backends", ()), backend})
        job.params = dict(job.params) | {"backends": ran}


def beat(job_id: str, settings: Settings | None = None) -> None:
    """Refresh the heartbeat of ``job_id`` while this worker owns it."""
    with db_session(settings or get_settings()) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.worker_host == worker_identity())
            .values(heartbeat_at=utcnow())
        )


def stop_reason(job_id: str, settings: Settings | None = None) -> str | None:
    """Why this worker's run of ``job_id`` must stop now: ``"cancelled"``, ``"taken
    over"`` (another worker claimed the job, believing this one dead) or ``None``."""
    with db_session(settings or get_settings()) as session:
        row = session.execute(
            select(Job.cancel_requested, Job.worker_host).where(Job.id == job_id)
        ).first()
    if row is None or row.worker_host != worker_identity():
        return "taken over"
    return "cancelled" if row.cancel_requested else None


def cancel_state(job_id: str, settings: Settings | None = None) -> tuple[bool, str | None]:
    """``(cancel requested, state)`` of ``job_id`` (``(False, None)`` if it is gone)."""
    with db_session(settings or get_settings()) as session:
        row = session.execute(
            select(Job.cancel_requested, Job.state).where(Job.id == job_id)
        ).first()
    return (bool(row.cancel_requested), row.state) if row is not None else (False, None)


def end_owned_job(
    job_id: str,
    state: str,
    result: dict[str, Any] | None = None,
    progress_done: int | None = None,
    settings: Settings | None = None,
) -> bool:
    """Record the end of this worker's run of ``job_id``: ``state``, with ``result`` and
    ``progress_done`` when given. Returns ``False`` (nothing written) when another worker
    took the job over."""
    with db_session(settings or get_settings()) as session:
        job = owned_job(session, job_id)
        if job is None:
            return False
        if result is not None:
            job.result = jsonable(result)
        if progress_done is not None:
            job.progress_done = progress_done
        end_job(job, state)
        return True


def fail_claimed_job(job_id: str, message: str, settings: Settings | None = None) -> None:
    """Mark ``job_id`` failed with ``message`` (its task raised)."""
    with db_session(settings or get_settings()) as session:
        job = session.get(Job, job_id)
        if job is not None:
            end_job(job, "failed", message)


# ---------------------------------------------------------------------- training figures


def record_step_progress(
    job_id: str, progress: dict[str, Any], settings: Settings | None = None
) -> None:
    """A running training job's position inside its epoch (``Job.step_progress``)."""
    with db_session(settings or get_settings()) as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(step_progress=jsonable(progress))
        )


def record_epoch(
    job_id: str,
    epoch: int,
    train: dict[str, Any],
    val: dict[str, Any],
    lr: float | None,
    settings: Settings | None = None,
) -> None:
    """One finished epoch's figures, the job's progress and heartbeat, in one commit."""
    with db_session(settings or get_settings()) as session:
        upsert_epoch_metrics(session, job_id, epoch, "train", train, lr)
        upsert_epoch_metrics(session, job_id, epoch, "val", val, lr)
        session.execute(
            update(Job).where(Job.id == job_id).values(progress_done=epoch, heartbeat_at=utcnow())
        )


def record_checkpoint(
    job_id: str,
    path: str | Path,
    epoch: int,
    metrics: dict[str, Any],
    is_best: bool,
    settings: Settings | None = None,
) -> None:
    """Register a checkpoint the run saved; a new best one replaces the job's last best."""
    with db_session(settings or get_settings()) as session:
        if is_best:
            # One best checkpoint per job: the newest best_model.pth.
            session.execute(
                update(Checkpoint).where(Checkpoint.job_id == job_id).values(is_best=False)
            )
        register_checkpoint(session, job_id, path, epoch, metrics, is_best)
