"""Recording a remove-dir job's items as its folder is walked, and queuing each chunk
as soon as its rows are committed (issue 23, item 3).

:func:`record_items` takes the folder's plan in batches
(:func:`unetbg.removal.streaming.plan_folder_in_batches`) and writes each batch in one
short transaction (:data:`RECORD_BATCH` items: the write lock is held for tens of
milliseconds, so other commands and workers go on). With a broker, the batch's chunks
are sent right after its commit, so workers start on a million-file folder within
seconds instead of after the whole walk; the job is marked
:data:`~unetbg.jobs.records.SENT_WHILE_RECORDING` so that its dispatch sends nothing
twice. Without a broker this process runs the chunks itself once recording is done.

A chunk never spans two batches: the images of a batch's last, incomplete chunk wait
for the next batch, so every chunk is sent once, whole. While the job says
``recording`` (the process, ``host:pid``), settling never ends it early; a cancel stops
the walk at the next batch; a recording that stops midway fails the job
(:func:`~unetbg.jobs.records.fail_recording`), or deletes it when nothing was queued
yet, so that running the same command again starts afresh.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from unetbg.db.models import FINAL_JOB_STATES, Job, JobItem, utcnow
from unetbg.durable import remove_stale_temporaries
from unetbg.jobs.errors import JobError
from unetbg.jobs.records import (
    RECORDING,
    fail_recording,
    settle_remove_dir,
    shift_counts,
)
from unetbg.jobs.sending import Sending, send_tasks
from unetbg.jobs.store import db_session, find_job
from unetbg.settings import Settings, mask_url

if TYPE_CHECKING:
    from unetbg.removal import PlannedItem

log = logging.getLogger(__name__)

#: Items per transaction of a remove-dir job's recording (and per batch of its walk).
RECORD_BATCH = 5_000

#: A job submitted without a chunk size grows its chunks: the first ``GROW_AFTER`` hold
#: the base size (``UNETBG_CHUNK_SIZE``), so the first images start at once and spread
#: over every worker; each later chunk holds a ``GROW_AFTER``-th of the images chunked
#: before it, up to ``LARGEST_CHUNK``. A million images are then ~6,700 tasks (seconds
#: of publishing) instead of 62,500 at 16 (over a minute of it, on this 2-core machine),
#: and each task's own cost (claim, model set-up, acks) is shared by more images. A
#: chunk of 256 takes ~30 s on a CPU worker: the end of a job still balances.
GROW_AFTER = 1_000
LARGEST_CHUNK = 256


def chunk_size_after(numbered: int, base: int, grow: bool) -> int:
    """The size of the chunk that starts after ``numbered`` images were chunked."""
    if not grow:
        return base
    return max(base, min(LARGEST_CHUNK, numbered // GROW_AFTER))


def record_items(
    job_id: str,
    batches: Iterable[list[PlannedItem]],
    chunk_size: int,
    settings: Settings,
    grow: bool = False,
) -> None:
    """Record ``batches`` (the folder's plan, walked as they are taken) as ``job_id``'s
    items, each batch committed and then, with a broker, its chunks sent; chunks hold
    ``chunk_size`` images, or start there and ``grow`` (:func:`chunk_size_after`). The last
    transaction clears the job's ``recording`` mark and settles it (final at once when
    nothing is to do). Raises what the walk, the database or the broker raised, after
    failing the job (or deleting it when nothing of it was queued)."""
    recorder = _Recorder(job_id, chunk_size, settings, grow)
    try:
        for plans in batches:
            # Not the last: a batch is committed before the next one is walked.
            if not recorder.record(plans, last=False):
                return  # cancelled: nothing more to record
        recorder.record([], last=True)  # the images carried over, and the job settled
    except BaseException as exc:
        recorder.abandon(exc)
        raise


class _Recorder:
    """One job's recording: numbers its chunks across batches, commits, sends."""

    def __init__(self, job_id: str, chunk_size: int, settings: Settings, grow: bool) -> None:
        self.job_id, self.chunk_size, self.settings = job_id, chunk_size, settings
        self.grow = grow
        self.numbered = 0  # images to do given a chunk so far (whole chunks only)
        self.chunk = 0  # the next chunk's number
        self.carried: list[PlannedItem] = []  # the last batch's incomplete chunk
        self.sent = 0  # chunks queued so far
        self.now = utcnow()

    def record(self, plans: list[PlannedItem], last: bool) -> bool:
        """Commit ``plans``, then queue their chunks; ``False`` when the job was
        cancelled meanwhile."""
        chunks = self.commit(plans, last)
        if chunks is None:
            return False
        self.send(chunks)
        return True

    def commit(self, plans: list[PlannedItem], last: bool) -> dict[int, list[int]] | None:
        """Write ``plans`` (and the images carried over) in one transaction; returns
        the chunks whose items it made pending (number -> item ids), or ``None`` when
        the job was cancelled meanwhile (the walk stops, the job settles)."""
        rows, existing = self._rows(self.carried + plans, last)
        # A worker killed mid-write leaves a hidden temporary beside an output this job
        # will write again; none of these chunks runs yet, so clear them now.
        remove_stale_temporaries(row["output_path"] for row in rows if row["chunk"] is not None)
        with db_session(self.settings) as session:
            job = find_job(session, self.job_id, for_update=True)
            if job.cancel_requested or job.state in FINAL_JOB_STATES:
                self._end(session, job)
                return None
            chunks = self._insert(session, rows)
            counts = Counter(row["state"] for row in rows)
            shift_counts(session, self.job_id, counts)
            session.execute(
                update(Job)
                .where(Job.id == self.job_id)
                .values(
                    outputs_skipped=Job.outputs_skipped + existing,
                    progress_total=Job.progress_total + counts["pending"],
                ),
                execution_options={"synchronize_session": False},
            )
            if last:
                self._end(session, job)
        return chunks

    def _rows(self, plans: list[PlannedItem], last: bool) -> tuple[list[dict], int]:
        """One row per planned image: ``skipped`` with its reason, else ``pending`` in
        the next chunk; plain rows (an ORM object each cost 1.4 GB at 100,000 images).
        An output that exists is counted, not recorded (a re-run of a folder 90 % done
        wrote a row for each). Sets aside the images of an incomplete last chunk unless
        this is the last batch."""
        from unetbg.removal import SKIP_EXISTS

        rows, todo, existing = [], [], 0
        for plan in plans:
            if plan.skip_reason == SKIP_EXISTS:
                existing += 1
            elif plan.skip_reason:
                rows.append(self._row(plan, "skipped", None, plan.skip_reason))
            else:
                todo.append(plan)
        start = 0
        while start < len(todo):
            size = chunk_size_after(self.numbered, self.chunk_size, self.grow)
            if len(todo) - start < size and not last:
                break
            for plan in todo[start : start + size]:
                rows.append(self._row(plan, "pending", self.chunk))
            self.numbered += min(size, len(todo) - start)
            self.chunk += 1
            start += size
        self.carried = todo[start:]
        return rows, existing

    def _row(self, plan: PlannedItem, state: str, chunk: int | None, error: str | None = None):
        return {
            "job_id": self.job_id,
            "source_path": str(plan.source),
            # Skipped entries (links, non-images) may have no output at all.
            "output_path": None if plan.output is None else str(plan.output),
            "state": state,
            "error": error,
            "chunk": chunk,
            "attempts": 0,
            "updated_at": self.now,
        }

    def _insert(self, session: Session, rows: list[dict]) -> dict[int, list[int]]:
        """Insert ``rows``; their chunks (number -> item ids)."""
        if not rows:
            return {}
        # A plain executemany, then the new ids read back by one index range: RETURNING
        # in parameter order made SQLAlchemy send SQLite one statement per row (a
        # quarter of a 100,000-image submission's time). The job row is locked, so the
        # job's items above its last id before this insert are this batch's.
        before = session.scalar(select(func.max(JobItem.id)).where(JobItem.job_id == self.job_id))
        session.execute(insert(JobItem.__table__), rows)
        new = select(JobItem.chunk, JobItem.id).where(
            JobItem.job_id == self.job_id, JobItem.id > (before or 0), JobItem.chunk.is_not(None)
        )
        chunks: dict[int, list[int]] = {}
        for chunk, item_id in session.execute(new.order_by(JobItem.id)):
            chunks.setdefault(chunk, []).append(item_id)
        return chunks

    def _end(self, session: Session, job: Job) -> None:
        """The recording is over: clear its mark, settle the job."""
        job.params = {k: v for k, v in job.params.items() if k != RECORDING}
        settle_remove_dir(session, job)

    def send(self, chunks: dict[int, list[int]]) -> None:
        """With a broker, queue ``chunks`` now (their rows are committed)."""
        if self.settings.embedded or not chunks:
            return
        try:
            send_tasks(Sending(self.job_id, "remove_dir"), chunks, self.settings)
        except Exception as exc:  # broker unreachable after the publish retries
            raise JobError(
                f"job {self.job_id}'s images could not be queued: broker "
                f"{mask_url(self.settings.broker_url)} unreachable ({exc})"
            ) from exc
        self.sent += len(chunks)

    def abandon(self, exc: BaseException) -> None:
        """The recording stopped on ``exc``: delete the job when nothing of it was
        queued (no worker can have seen it), else fail it. Best effort, as the
        database may be what failed."""
        try:
            with db_session(self.settings) as session:
                if not self.sent:
                    session.execute(delete(Job).where(Job.id == self.job_id))
                    return
                job = find_job(session, self.job_id, for_update=True)
                why = str(exc) or type(exc).__name__
                fail_recording(
                    session,
                    job,
                    f"the submission stopped before every image was recorded ({why}); "
                    "run the same remove-dir again",
                )
        except Exception:  # noqa: BLE001 - the first error is the one to report
            log.warning("job %s: could not close its partial record", self.job_id, exc_info=True)
