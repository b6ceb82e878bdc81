"""``remove_chunk(job_id, item_ids)``: cut out one chunk of a remove-dir job.

Idempotent: only the chunk's items still ``pending`` (or ``running`` under a worker
that died) are claimed, so a redelivered chunk never redoes a finished image.
Each image's outcome is written as it finishes; the job becomes final when its
last item does (``jobs.settle_remove_dir``). A cancel stops the chunk at its next
image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import shared_task
from sqlalchemy import select, update

from unetbg.db.models import FINAL_JOB_STATES, Job, JobItem, utcnow
from unetbg.jobs import OPEN_ITEM_STATES, output_options, settle_remove_dir, worker_identity
from unetbg.tasks.base import JobTask

#: Loaded models of this worker process, keyed by checkpoint file version and device.
#: Filled on the first chunk (never at fork time: CUDA must start in the child).
_models: dict[tuple, Any] = {}


def model_for(checkpoint: str, device: str, batch_size: int, max_pixels: int | None):
    """This process's :class:`~unetbg.inference.ModelInference` for ``checkpoint``.

    Loaded once and reused by every later chunk; a checkpoint rewritten in place
    (new mtime/size) is loaded again. One model is kept: GPU memory is the limit.
    """
    stat = os.stat(checkpoint)
    key = (checkpoint, stat.st_mtime_ns, stat.st_size, device, max_pixels)
    handle = _models.get(key)
    if handle is None:
        from unetbg.inference import ModelInference

        _models.clear()
        handle = ModelInference(
            checkpoint, device=device, batch_size=batch_size, max_pixels=max_pixels
        )
        _models[key] = handle
    handle.batch_size = batch_size
    return handle


class _Cancelled(Exception):
    """Raised from the per-image callback to stop ``process_images`` at once."""


class RemoveChunkTask(JobTask):
    def claim_items(self, job_id: str, item_ids: list[int]):
        """Mark this chunk's open items ``running``; ``None`` when nothing is to be done."""
        with self.session() as session:
            job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
            if job is None:
                self.log.warning("no such job; dropping the chunk")
                return None
            if job.state in FINAL_JOB_STATES:
                self.log.info("already %s; dropping the chunk", job.state)
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
            if job.cancel_requested:
                for item in items:
                    item.state, item.error, item.updated_at = "cancelled", "job cancelled", now
                settle_remove_dir(session, job)
                return None
            if not items:
                self.log.info("chunk already done (redelivered message)")
                settle_remove_dir(session, job)
                return None
            for item in items:
                item.state, item.updated_at = "running", now
            if job.state == "queued":
                job.state = "running"
            job.started_at = job.started_at or now
            job.worker_host, job.heartbeat_at = worker_identity(), now
            return dict(job.params), [(i.id, i.source_path, i.output_path) for i in items]

    def close_items(self, job_id: str, item_ids: list[int], state: str, error: str) -> None:
        """Give the chunk's still-open items a final ``state`` and settle the job."""
        with self.session() as session:
            session.execute(
                update(JobItem)
                .where(
                    JobItem.job_id == job_id,
                    JobItem.id.in_(item_ids),
                    JobItem.state.in_(OPEN_ITEM_STATES),
                )
                .values(state=state, error=error, updated_at=utcnow())
            )
            job = session.get(Job, job_id)
            if job is not None:
                settle_remove_dir(session, job)

    def record_failure(self, job_id, args, kwargs, message) -> None:
        # The chunk's own items fail (e.g. an unreadable checkpoint); other chunks go on.
        item_ids = args[1] if len(args) > 1 else kwargs.get("item_ids", [])
        self.close_items(job_id, item_ids, "failed", message)


@shared_task(bind=True, base=RemoveChunkTask, name="unetbg.remove_chunk")
def remove_chunk(self: RemoveChunkTask, job_id: str, item_ids: list[int]) -> dict:
    """Process the chunk's open items in model batches; returns counts."""
    claimed = self.claim_items(job_id, item_ids)
    if claimed is None:
        return {"job": job_id, "processed": 0}
    params, rows = claimed
    from unetbg.removal import PlannedItem, process_images

    settings = self.settings
    options = output_options(params)
    handle = model_for(
        params["checkpoint"],
        params.get("device", "auto"),
        params.get("batch_size", 4),
        settings.max_image_pixels,
    )
    input_root, output_root = Path(params["input_dir"]), Path(params["output_dir"])
    planned, ids = [], {}
    for item_id, source, output in rows:
        source_path = Path(source)
        relative = (
            source_path.relative_to(input_root)
            if source_path.is_relative_to(input_root)
            else Path(source_path.name)
        )
        planned.append(PlannedItem(source_path, relative, Path(output), None, output_root))
        ids[source] = item_id
    counts = {"succeeded": 0, "failed": 0}

    def on_result(item, result) -> None:
        state = "succeeded" if result.ok else "failed"
        counts[state] += 1
        with self.session() as session:
            session.execute(
                update(JobItem)
                .where(JobItem.id == ids[str(item.source)])
                .values(
                    state=state, error=result.error, duration_s=result.seconds, updated_at=utcnow()
                )
            )
            # Per image only the item and the heartbeat: counting the job's items
            # (settling) is once per chunk, as it grows with the size of the job.
            session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))
            cancel = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
        if cancel:
            raise _Cancelled

    try:
        process_images(handle, planned, options, on_result, settings.max_image_pixels)
    except _Cancelled:
        self.log.info("cancel requested: stopping after %d image(s)", sum(counts.values()))
        self.close_items(job_id, list(ids.values()), "cancelled", "job cancelled")
    else:
        self.close_items(job_id, list(ids.values()), "failed", "not processed")
    self.log.info("chunk done: %(succeeded)d succeeded, %(failed)d failed", counts)
    return {"job": job_id, "processed": sum(counts.values()), **counts}
