"""The JSON documents that describe jobs and checkpoints to programs.

One place builds them, so the CLI's ``--json`` and the HTTP API (``unetbg serve``) print
the same object for the same job: :func:`job_document` (``unetbg status JOB --json``,
``GET /api/jobs/{id}``) and :func:`checkpoint_documents` (``unetbg checkpoints --json``,
``GET /api/checkpoints``).
"""

from __future__ import annotations

from typing import Any

from unetbg.jobs.hints import waiting_hints
from unetbg.jobs.lost import mark_lost_jobs
from unetbg.jobs.queries import (
    ITEM_FILTERS,
    chosen_items,
    get_job,
    list_checkpoints,
    list_epoch_metrics,
)
from unetbg.settings import Settings, get_settings
from unetbg.weights import default_checkpoint

#: ``items=`` choices of :func:`job_document`: which of a job's images to list (the
#: failed ones, the written ones whose output shows no person, or all).
ITEM_CHOICES = ITEM_FILTERS


def job_document(
    job_id: str, items: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """One job as JSON: the job, ``hints`` (why it may be waiting), a training job's
    ``epochs`` and ``checkpoints``, and with ``items`` (one of :data:`ITEM_CHOICES`)
    its images as ``item_list``, all in one document: the small-job form (a large job's
    are read a page at a time: :func:`unetbg.jobs.queries.item_pages`). Jobs whose worker
    is gone are marked lost first."""
    settings = settings or get_settings()
    if items is not None and items not in ITEM_CHOICES:
        raise ValueError(f"items must be one of {', '.join(ITEM_CHOICES)}, got {items!r}")
    mark_lost_jobs(settings)
    job = get_job(job_id, settings)
    out = job.to_dict()
    out["hints"] = waiting_hints(job, settings)
    if items:
        out["item_list"] = [i.to_dict() for i in chosen_items(job.id, items, settings)]
    if job.kind == "train":
        out["epochs"] = [e.to_dict() for e in list_epoch_metrics(job.id, settings)]
        out["checkpoints"] = [c.to_dict() for c in list_checkpoints(job.id, settings)]
    return out


def checkpoint_documents(
    job_id: str | None = None, settings: Settings | None = None
) -> list[dict[str, Any]]:
    """The registered checkpoints (newest first; one job's with ``job_id``) and, in the
    full list, the default model that ships with unetbg (``"default": true``)."""
    settings = settings or get_settings()
    entries = [c.to_dict() for c in list_checkpoints(job_id, settings)]
    shipped = default_checkpoint(settings) if job_id is None else None
    if shipped is not None and shipped.is_file():
        entries.append(
            {"id": None, "default": True, "path": str(shipped), "bytes": shipped.stat().st_size}
        )
    return entries
