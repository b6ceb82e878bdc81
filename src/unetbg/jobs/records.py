"""What the tasks record on a job: its end, its items' tally, checkpoints, epoch figures.

Every function here works inside the caller's transaction (a ``Session`` and ORM
rows), so a task writes an outcome and its consequences in one commit.

A remove-dir job counts its items by state in its own row (``Job.items_<state>``,
issue 23): whatever moves items moves the counters in the same transaction, through
:func:`shift_counts` (or :func:`move_items`, which does both), after locking the job's
row (:func:`lock_job`), so two transactions never count the same move. Reading a job
then counts nothing; :func:`item_tally` recounts, for watched jobs (whose items
:mod:`unetbg.jobs.watched` resets) and for the tests.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from unetbg.db.models import (
    FINAL_JOB_STATES,
    ITEM_STATES,
    Checkpoint,
    EpochMetric,
    Job,
    JobItem,
    utcnow,
)
from unetbg.durable import file_sha256
from unetbg.jobs.sending import next_round
from unetbg.jobs.store import db_session, find_job
from unetbg.settings import Settings, get_settings

#: Item states a chunk task (re)claims: ``running`` ones belong to a worker that died.
OPEN_ITEM_STATES = ("pending", "running")
#: Item states that count as progress: images processed. Cancelled and skipped images
#: were not, so a job cancelled at 41 of 159 images shows 41/159 and its rate uses 41.
PROCESSED_ITEM_STATES = ("succeeded", "failed")
#: ``Job.params`` key of a remove-dir job whose items are still being recorded
#: (:func:`unetbg.jobs.create.create_remove_dir_job`), naming the recording process
#: (``host:pid``): the job stays open until they are, or fails if that process dies.
RECORDING = "recording"
#: ``Job.params`` key of a remove-dir job whose submitter queued each chunk as soon as
#: its items were committed (:mod:`unetbg.jobs.recording`): the first
#: :func:`unetbg.jobs.dispatch` of the job has nothing left to send.
SENT_WHILE_RECORDING = "sent_while_recording"


def item_counts(session: Session, job_id: str) -> dict[str, int]:
    """How many items of ``job_id`` are in each state (states with none are left out)."""
    rows = session.execute(
        select(JobItem.state, func.count()).where(JobItem.job_id == job_id).group_by(JobItem.state)
    )
    return {state: count for state, count in rows}


def no_person_filter():
    """The SQL condition of a succeeded item whose output shows no person."""
    # Lazily: reading jobs loads no image code until a remove-dir job is read.
    from unetbg.removal.presence import NO_PERSON_SHARE

    return and_(JobItem.state == "succeeded", JobItem.person_share < NO_PERSON_SHARE)


def item_tally(session: Session, job_id: str) -> tuple[dict[str, int], int]:
    """:func:`item_counts` and how many succeeded items found no person
    (``removal.presence``), in one pass over the job's items: a job's view is read on
    every status call and poll."""
    rows = session.execute(
        select(JobItem.state, func.count(), func.count().filter(no_person_filter()))
        .where(JobItem.job_id == job_id)
        .group_by(JobItem.state)
    ).all()
    return {state: count for state, count, _ in rows}, sum(found for *_, found in rows)


def shows_no_person(share: float | None) -> bool:
    """Whether a succeeded image whose output shows ``share`` of a person shows none."""
    from unetbg.removal.presence import NO_PERSON_SHARE

    return share is not None and share < NO_PERSON_SHARE


def lock_job(session: Session, job_id: str) -> None:
    """Lock ``job_id``'s row until the transaction ends (PostgreSQL; SQLite's
    transactions each hold the one write lock): taken before moving its items."""
    session.execute(select(Job.id).where(Job.id == job_id).with_for_update())


def shift_counts(
    session: Session, job_id: str, delta: Mapping[str, int], no_person: int = 0
) -> None:
    """Add ``delta`` (state -> items gained, negative for lost) to ``job_id``'s counters,
    and ``no_person`` to its count of succeeded images that show no person."""
    values = {
        f"items_{state}": getattr(Job, f"items_{state}") + n for state, n in delta.items() if n
    }
    if no_person:
        values["items_no_person"] = Job.items_no_person + no_person
    if values:
        session.execute(
            update(Job).where(Job.id == job_id).values(**values),
            execution_options={"synchronize_session": False},
        )


def moves(old_states: Iterable[str], new_state: str) -> Counter:
    """The counters' change when items in ``old_states`` move to ``new_state``."""
    delta: Counter = Counter()
    for state in old_states:
        delta[state] -= 1
        delta[new_state] += 1
    return delta


def move_items(session: Session, job_id: str, condition, state: str, **values: Any) -> int:
    """Give ``job_id``'s items matching ``condition`` the ``state`` (and ``values``), and
    its counters the change; returns how many moved."""
    lock_job(session, job_id)
    rows = session.execute(
        select(JobItem.state, func.count(), func.count().filter(no_person_filter()))
        .where(JobItem.job_id == job_id, condition)
        .group_by(JobItem.state)
    ).all()
    moved = session.execute(
        update(JobItem)
        .where(JobItem.job_id == job_id, condition)
        .values(state=state, updated_at=utcnow(), **values)
    ).rowcount
    delta: Counter = Counter()
    for old, count, _ in rows:
        delta[old] -= count
        delta[state] += count
    no_person = 0 if state == "succeeded" else -sum(found for *_, found in rows)
    shift_counts(session, job_id, delta, no_person)
    return moved


def counted(session: Session, job_id: str) -> tuple[dict[str, int], int, int]:
    """``job_id``'s counters: items by state (states with none left out), succeeded
    images that show no person, and outputs skipped without an item."""
    columns = [getattr(Job, f"items_{state}") for state in ITEM_STATES]
    row = session.execute(
        select(*columns, Job.items_no_person, Job.outputs_skipped).where(Job.id == job_id)
    ).one()
    counts = {state: n for state, n in zip(ITEM_STATES, row, strict=False) if n}
    return counts, row.items_no_person, row.outputs_skipped


def recount(session: Session, job_id: str) -> None:
    """Set ``job_id``'s counters from its items (:func:`item_tally`)."""
    counts, no_person = item_tally(session, job_id)
    values = {f"items_{state}": counts.get(state, 0) for state in ITEM_STATES}
    session.execute(
        update(Job).where(Job.id == job_id).values(**values, items_no_person=no_person),
        execution_options={"synchronize_session": False},
    )


def end_job(job: Job, state: str, error: str | None = None) -> None:
    """Move ``job`` to the final ``state`` (no-op when it already is final)."""
    if job.state in FINAL_JOB_STATES:
        return
    job.state, job.finished_at = state, utcnow()
    if error is not None:
        job.error = error


def reopen_job(job: Job) -> None:
    """Queue a job that ended, or whose worker is gone, again, keeping its record (items,
    epochs, checkpoints, attempts): the next attempt claims it afresh, under new task ids
    (a cancel may have revoked the old ones, :mod:`unetbg.jobs.sending`), and its
    ``started`` time and run time are that attempt's."""
    job.state, job.error, job.finished_at, job.result = "queued", None, None, None
    job.cancel_requested, job.worker_host = False, None
    # The stopped run's position and clock are not the new attempt's: `status` would show
    # the old step, and a run time counting the interval it stood still (issue 20, 13).
    job.step_progress, job.started_at = None, None
    next_round(job)


def watching(job: Job) -> bool:
    """Whether a ``remove-dir --watch`` process still adds images to ``job``
    (:mod:`unetbg.jobs.watched`): such a job stays open when its items are all done."""
    return bool((job.params or {}).get("watch"))


def settle_remove_dir(session: Session, job: Job) -> None:
    """Refresh a remove-dir job's progress; make it final once every item is, unless it
    is watched (and not cancelled): ending the watch settles it.

    Final state: ``cancelled`` if a cancel was requested and some items never ran, or
    it ended a watch (the job would have gone on: issue 20, item 13), ``failed`` if
    every processed item failed, ``partial`` if some did, ``succeeded`` otherwise
    (skipped items count as done).
    """
    session.flush()
    found, _, outputs_skipped = counted(session, job.id)
    counts = Counter(found)
    job.progress_done = sum(counts[state] for state in PROCESSED_ITEM_STATES)
    if counts["pending"] + counts["running"] or (job.params or {}).get(RECORDING):
        return
    if watching(job) and not job.cancel_requested:
        return
    counts["skipped"] += outputs_skipped
    summary = {state: counts[state] for state in ITEM_STATES if state not in OPEN_ITEM_STATES}
    job.result = summary
    if counts["cancelled"] or (job.cancel_requested and watching(job)):
        end_job(job, "cancelled")
    elif counts["failed"] and not counts["succeeded"]:
        end_job(job, "failed", f"all {counts['failed']} images failed")
    elif counts["failed"]:
        end_job(
            job,
            "partial",
            f"{counts['failed']} of {counts['failed'] + counts['succeeded']} images failed "
            f"(list them with `unetbg status {job.id} --items failed`)",
        )
    else:
        end_job(job, "succeeded")


def end_watch(session: Session, job: Job, lost: str | None = None) -> None:
    """Clear ``job``'s watch (:func:`watching`) and settle it: final once its items are.

    ``lost`` is set when the watching process died (:func:`unetbg.jobs.mark_lost_jobs`):
    if it ran the items itself (embedded mode), those it had queued or was running
    fail with that reason, as nothing else will run them.
    """
    watch = (job.params or {}).get("watch")
    if not watch:
        return
    job.params = {key: value for key, value in job.params.items() if key != "watch"}
    if lost is not None and watch.get("runs_items"):
        mine = or_(
            JobItem.state == "pending",
            and_(JobItem.state == "running", JobItem.claimed_by == watch.get("by")),
        )
        move_items(session, job.id, mine, "failed", error=lost)
    settle_remove_dir(session, job)


def fail_recording(session: Session, job: Job, reason: str) -> None:
    """Fail a remove-dir job whose recording stopped before its last item (its submitter
    died or gave up): the rest of the folder will never be recorded, so it cannot end
    well. Its pending images fail with ``reason`` and the cancel flag stops its queued
    and running chunks; what already ran stays done. A job already final (cancelled
    meanwhile) only loses its ``recording`` mark. Call it with the job's row locked."""
    job.params = {k: v for k, v in job.params.items() if k != RECORDING}
    if job.state in FINAL_JOB_STATES:
        return
    job.cancel_requested = True
    move_items(session, job.id, JobItem.state == "pending", "failed", error=reason)
    settle_remove_dir(session, job)  # progress and the item summary
    # Failed with this reason, even where settling alone would say "partial".
    job.state, job.error = "failed", reason
    job.finished_at = job.finished_at or utcnow()


def fail_job(
    job_id: str,
    reason: str,
    settings: Settings | None = None,
    item_states: Sequence[str] = ("pending",),
) -> None:
    """Fail a job that nothing will finish, with ``reason`` as its error.

    Its items in ``item_states`` fail with the same reason and the cancel flag is set,
    so chunks still queued drop themselves. A job already final is left as it is.
    Used when its tasks cannot be queued, when the embedded runner died, and when a
    worker cannot use the job's device.
    """
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = find_job(session, job_id, for_update=True)
        if job.state in FINAL_JOB_STATES:
            return
        job.cancel_requested = True
        if job.kind == "remove_dir":
            move_items(session, job.id, JobItem.state.in_(item_states), "failed", error=reason)
            settle_remove_dir(session, job)  # progress and the item summary
        # Failed with this reason, even where settling alone would say "partial".
        job.state, job.error = "failed", reason
        job.finished_at = job.finished_at or utcnow()


def register_checkpoint(
    session: Session,
    job_id: str | None,
    path: str | os.PathLike,
    epoch: int | None,
    metrics: dict[str, Any] | None,
    is_best: bool,
) -> Checkpoint:
    """Insert or refresh the row for ``path`` (a run rewrites ``best``/``last`` in place)."""
    path = str(Path(path).resolve())
    row = session.scalars(
        select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.path == path)
    ).first()
    if row is None:
        row = Checkpoint(job_id=job_id, path=path)
        session.add(row)
    row.epoch, row.metrics, row.is_best = epoch, jsonable(metrics), is_best
    row.sha256 = file_sha256(path)
    row.created_at = utcnow()
    return row


def jsonable(value: Any) -> Any:
    """``value`` with numpy/torch scalars turned into plain JSON numbers."""
    return json.loads(json.dumps(value, default=float)) if value is not None else None


def upsert_epoch_metrics(
    session: Session, job_id: str, epoch: int, split: str, metrics: dict[str, Any], lr: float | None
) -> None:
    """Write one epoch's figures; a resumed run rewrites the epoch instead of adding one."""
    row = session.scalars(
        select(EpochMetric).where(
            EpochMetric.job_id == job_id, EpochMetric.epoch == epoch, EpochMetric.split == split
        )
    ).first()
    if row is None:
        row = EpochMetric(job_id=job_id, epoch=epoch, split=split)
        session.add(row)
    for name in ("loss", "iou", "dice", "pixel_accuracy"):
        value = metrics.get(name)
        setattr(row, name, float(value) if value is not None else None)
    row.lr = float(lr) if lr is not None else None
