"""The job records: jobs, their per-image items, checkpoints and epoch metrics.

The database is the durable record of every job (Flower keeps history in memory
only). States are plain strings checked by the application, so adding one needs
no migration of an enum type.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from unetbg.db.base import Base

JOB_KINDS = ("train", "remove_dir", "evaluate")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "partial")
FINAL_JOB_STATES = ("succeeded", "failed", "cancelled", "partial")
ITEM_STATES = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")
FINAL_ITEM_STATES = ("succeeded", "failed", "skipped", "cancelled")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    # Short enough to type, random enough to never collide across machines.
    return uuid.uuid4().hex[:12]


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    kind: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Items (remove-dir) or steps/epochs (train) done and in total.
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    #: A running training job's position inside its epoch (epoch, step/steps, loss,
    #: images/s, ETA), written by its worker at a bounded rate.
    step_progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: Result figures of a finished job (evaluation metrics, final training metrics).
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Set by `unetbg cancel`; workers check it between batches and steps.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: Refreshed by the worker while it runs; a stale heartbeat marks a lost worker.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: How many times a worker has started this job (redelivery after a crash adds one).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: How many times the job's unfinished work was sent again (``unetbg retry``,
    #: ``submit-train --resume``, the work of a dead worker): task ids of a later round
    #: carry it (``jobs.sending``), so an id that a cancel revoked is never sent again.
    send_round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: A remove-dir job's items by state, kept by ``jobs.records.shift_counts`` in the
    #: transaction that moves them, so reading a job counts no items (issue 23).
    items_pending: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    items_running: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    items_succeeded: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    items_failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    items_skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    items_cancelled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Succeeded items whose output shows no person (``removal.presence``).
    items_no_person: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Images whose output existed when the job was recorded: counted, not recorded
    #: as items (a re-run of a folder 90 % done wrote a row for each).
    outputs_skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    items: Mapped[list[JobItem]] = relationship(back_populates="job", cascade="all, delete-orphan")
    checkpoints: Mapped[list[Checkpoint]] = relationship(
        back_populates="job", cascade="all, delete-orphan"
    )
    epoch_metrics: Mapped[list[EpochMetric]] = relationship(
        back_populates="job", cascade="all, delete-orphan"
    )

    __table_args__ = (Index("ix_jobs_kind_created", "kind", "created_at"),)


class JobItem(Base):
    """One image of a remove-dir job."""

    __tablename__ = "job_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: Indexed with ``id`` (and with ``state, id``) below: item pages are id ranges.
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    source_path: Mapped[str] = mapped_column(Text)
    output_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: Which chunk task the item was dispatched in (for Flower and for redelivery).
    chunk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: ``host:pid`` of the chunk attempt that claimed the item (``running``): only that
    #: attempt writes its outcome; another takes it over only once the claimant is dead.
    claimed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: How many times a worker claimed the image; a worker that dies holding it has it
    #: sent again only while this is below ``jobs.claims.MAX_ITEM_ATTEMPTS``.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Share (0-1) of the written output that shows the person
    #: (``removal.presence.person_share``); ``None`` until the image succeeded.
    person_share: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    job: Mapped[Job] = relationship(back_populates="items")

    __table_args__ = (
        UniqueConstraint("job_id", "source_path", name="uq_job_items_job_id_source_path"),
        # Keyset pages of a job's items (``jobs.queries.item_page``) read one range of
        # these, in id order, however long the job; their prefixes serve the lookups
        # by job and the counts by state. SQLite keys every index by id anyway;
        # PostgreSQL would otherwise sort all of a job's items for each page.
        Index("ix_job_items_job_id_id", "job_id", "id"),
        Index("ix_job_items_job_state_id", "job_id", "state", "id"),
    )


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    path: Mapped[str] = mapped_column(Text)
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    is_best: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    job: Mapped[Job | None] = relationship(back_populates="checkpoints")


class EpochMetric(Base):
    __tablename__ = "epoch_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(10))
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    iou: Mapped[float | None] = mapped_column(Float, nullable=True)
    dice: Mapped[float | None] = mapped_column(Float, nullable=True)
    pixel_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    lr: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="epoch_metrics")

    # A resumed training run rewrites an epoch instead of adding a duplicate row.
    __table_args__ = (
        UniqueConstraint("job_id", "epoch", "split", name="uq_epoch_metrics_job_id_epoch_split"),
    )
