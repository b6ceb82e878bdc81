"""``remove_chunk(job_id, item_ids)``: cut out one chunk of a remove-dir job.

Idempotent: only the chunk's items still ``pending`` (or ``running`` under a worker
that died) are claimed, so a redelivered chunk never redoes a finished image, and
never takes over an image a live worker is still processing (it is deferred).
Each image's outcome is written as it finishes; the job becomes final when its
last item does (``jobs.settle_remove_dir``). A cancel stops the chunk at its next
image.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from celery import shared_task

from unetbg.durable import remove_stale_temporaries
from unetbg.jobs import (
    claims,
    fail_job,
    worker_identity,
)
from unetbg.jobs.claims import ItemClaim, note_backend
from unetbg.removal import PlannedItem, RemovalRequest, process_images
from unetbg.removal.storage import location
from unetbg.tasks.base import ImagesFailed, JobCancelled, JobTask
from unetbg.workers import metrics

if TYPE_CHECKING:
    from unetbg.inference import ModelCache

#: Loaded models of this worker process (one: GPU memory is the limit). Made and filled
#: on the first chunk: never at fork time (CUDA must start in the child), and importing
#: the tasks imports no torch.
_models: list[ModelCache] = []


def model_cache() -> ModelCache:
    """This worker process's :class:`~unetbg.inference.ModelCache`."""
    if not _models:
        from unetbg.inference import ModelCache

        _models.append(
            ModelCache(1, on_load=lambda _, seconds: metrics.observe_model_load(seconds))
        )
    return _models[0]


class _Cancelled(Exception):
    """Raised from the per-image callback to stop ``process_images`` at once."""


class _TakenOver(Exception):
    """Raised from the per-image callback when another attempt now holds the image."""


class RemoveChunkTask(JobTask):
    """``remove_chunk``'s base: claims images, records each outcome, closes the rest,
    through the job service (:mod:`unetbg.jobs.claims`, which says when an image held
    by another attempt is taken over, and how many attempts an image gets)."""

    def claim_items(self, job_id: str, item_ids: list[int]) -> ItemClaim | None:
        """Claim this chunk's open images for this attempt; ``None`` when none is left.

        A claim with no rows but ``holders`` means a live attempt holds them all.
        """
        return claims.claim_items(job_id, item_ids, self.settings)

    def record_item(
        self,
        job_id: str,
        item_id: int,
        state: str,
        error: str | None,
        seconds: float | None,
        person_share: float | None = None,
    ) -> tuple[bool, bool]:
        """Write one image's outcome (and its output's person share) if this attempt
        still holds it; beat the heartbeat. Returns ``(written, cancel requested)``.
        """
        return claims.record_item(
            job_id, item_id, state, error, seconds, self.settings, person_share
        )

    def close_items(self, job_id: str, item_ids: list[int], state: str, error: str) -> None:
        """Give the chunk's images still open here a final ``state``; settle the job."""
        claims.close_items(job_id, item_ids, state, error, self.settings)

    def record_failure(self, job_id, args, kwargs, message) -> None:
        # The chunk's own items fail (e.g. an unreadable checkpoint); other chunks go on.
        item_ids = args[1] if len(args) > 1 else kwargs.get("item_ids", [])
        self.close_items(job_id, item_ids, "failed", message)


@shared_task(bind=True, base=RemoveChunkTask, name="unetbg.remove_chunk")
def remove_chunk(self: RemoveChunkTask, job_id: str, item_ids: list[int]) -> dict:
    """Process the chunk's open items in model batches; returns counts."""
    started = time.perf_counter()
    try:
        return _remove_chunk(self, job_id, item_ids)
    finally:
        metrics.observe_chunk(time.perf_counter() - started)


def _remove_chunk(self: RemoveChunkTask, job_id: str, item_ids: list[int]) -> dict:
    claim = self.claim_items(job_id, item_ids)
    if claim is None:
        self.raise_if_cancelled(job_id)
        return {"job": job_id, "processed": 0}
    if not claim.rows:  # a live attempt holds every open image: check again later
        self._defer(", ".join(sorted(claim.holders)), self.settings)
    if claim.reclaimed:
        removed = remove_stale_temporaries(claim.reclaimed)
        self.log.warning(
            "redoing %d image(s) of a dead attempt; removed %d leftover temporary file(s)",
            len(claim.reclaimed),
            removed,
        )
    settings = self.settings
    request = RemovalRequest.from_params(claim.params)
    claimed_ids = [item_id for item_id, _, _ in claim.rows]
    unseen = _unseen_input(claim.params)
    if unseen is not None:
        self.close_items(job_id, claimed_ids, "failed", unseen)
        raise ImagesFailed(f"job {job_id}: {unseen}")
    handle = _usable_model(self, job_id, claimed_ids, request)
    planned, ids = _planned_items(claim.rows, claim.params)
    options = request.output
    counts = {"succeeded": 0, "failed": 0}

    def on_result(item, result) -> None:
        state = "succeeded" if result.ok else "failed"
        written, cancel = self.record_item(
            job_id, ids[str(item.source)], state, result.error, result.seconds, result.person_share
        )
        if not written:
            raise _TakenOver
        counts[state] += 1
        metrics.count_image(state)
        if cancel:
            raise _Cancelled

    cancelled = False
    try:
        process_images(handle, planned, options, on_result, settings.max_image_pixels)
    except _Cancelled:
        self.log.info("cancel requested: stopping after %d image(s)", sum(counts.values()))
        self.close_items(job_id, claimed_ids, "cancelled", "job cancelled")
        cancelled = True
    except _TakenOver:
        # Another attempt judged this one dead and holds the images now: leave them.
        self.log.warning("images taken over by another attempt: stopping here")
    else:
        self.close_items(job_id, claimed_ids, "failed", "not processed")
    self.log.info("chunk done: %(succeeded)d succeeded, %(failed)d failed", counts)
    if claim.holders:  # images of this chunk a live attempt held: see them done later
        self._defer(", ".join(sorted(claim.holders)), settings)
    # Recorded above; raised so that Flower shows this chunk as failed (JobOutcome).
    if counts["failed"]:
        raise ImagesFailed(
            f"job {job_id}: {counts['failed']} of {len(claimed_ids)} images of this chunk "
            f"failed (`unetbg status {job_id} --items failed`)"
        )
    if cancelled:
        raise JobCancelled(f"job {job_id}: cancelled after {sum(counts.values())} image(s)")
    return {"job": job_id, "processed": sum(counts.values()), **counts}


def _unseen_input(params: dict[str, Any]) -> str | None:
    """Why this worker cannot read the job's local input folder, or ``None``.

    Workers read the submitter's absolute paths. On a machine that does not mount the
    same folder there, every image would fail alone as "file not found"; one message
    naming the cause (and the way out) is what the user needs. Object-store inputs
    (``scheme://``) are read over the network and always seen.
    """
    root = str(params.get("input_dir") or "")
    if not root or "://" in root or Path(root).is_dir():
        return None
    return (
        f"this worker ({worker_identity()}) cannot see the input folder {root} (not "
        "mounted here, or removed): workers need the submitter's paths on a shared "
        "filesystem, or an object store (s3://) for input and output"
    )


def _usable_model(
    self: RemoveChunkTask, job_id: str, claimed_ids: list[int], request: RemovalRequest
):
    """This worker's model for ``request``. A device or backend this worker lacks is the
    same on every image and every chunk here: the job fails once, saying why."""
    from unetbg.backends import BackendUnavailable
    from unetbg.model import resolve_device

    run = request.run
    try:
        resolve_device(run.device)
    except (RuntimeError, ValueError) as exc:
        reason = f"device {run.device!r} is not usable on worker {worker_identity()}: {exc}"
        _fail_chunk_job(self, job_id, claimed_ids, "device", reason)
    try:
        handle = model_cache().get(request.checkpoint, run, self.settings.max_image_pixels)
    except BackendUnavailable as exc:
        reason = f"backend {run.backend!r} is not usable on worker {worker_identity()}: {exc}"
        _fail_chunk_job(self, job_id, claimed_ids, "backend", reason)
    if (job_id, handle.backend_name) not in _NOTED:  # one write per job and backend here
        note_backend(job_id, handle.backend_name, self.settings)
        _NOTED.add((job_id, handle.backend_name))
    return handle


#: ``(job, backend)`` pairs this process has recorded on their job (``note_backend``).
_NOTED: set[tuple[str, str]] = set()


def _fail_chunk_job(
    self: RemoveChunkTask, job_id: str, claimed_ids: list[int], what: str, reason: str
) -> NoReturn:
    fail_job(job_id, reason, self.settings)
    self.close_items(job_id, claimed_ids, "failed", f"not processed: the job failed ({what})")
    raise ImagesFailed(f"job {job_id}: {reason}") from None


def _planned_items(
    rows: list[tuple[int, str, str]], params: dict[str, Any]
) -> tuple[list[PlannedItem], dict[str, int]]:
    """The claimed rows as the removal loop's items, and each source's item id. Paths
    and ``s3://`` URLs alike (:func:`unetbg.removal.storage.location`): the loop reads
    and writes each where it is."""
    input_root, output_root = location(params["input_dir"]), location(params["output_dir"])
    planned, ids = [], {}
    for item_id, source, output in rows:
        source_path = location(source)
        relative = Path(
            source_path.relative_to(input_root)
            if source_path.is_relative_to(input_root)
            else source_path.name
        )
        planned.append(PlannedItem(source_path, relative, location(output), None, output_root))
        ids[source] = item_id
    return planned, ids
