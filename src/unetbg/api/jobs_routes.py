"""``/api/jobs`` and ``/api/checkpoints``: the job service over HTTP.

Each answer is the document the CLI prints with ``--json`` for the same object
(:func:`unetbg.jobs.job_document`, :func:`unetbg.jobs.checkpoint_documents`,
:meth:`unetbg.jobs.JobView.to_dict`), so scripts can move between the two.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Query, Request

from unetbg import jobs
from unetbg.api.errors import ApiError
from unetbg.api.job_requests import JobRequest

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled", "partial"]
JobKind = Literal["train", "remove_dir", "evaluate"]


def submit_job(request: Request, body: Annotated[JobRequest, Body()]) -> dict[str, Any]:
    state = request.app.state
    job_id = body.create(state.config)
    try:
        state.runners.start(job_id)
    except jobs.JobError as exc:  # recorded, but the broker could not take it
        raise ApiError(503, str(exc)) from None
    return jobs.job_document(job_id, settings=state.config.settings)


def list_jobs(
    request: Request,
    state: JobState | None = None,
    kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[dict[str, Any]]:
    settings = request.app.state.config.settings
    jobs.mark_lost_jobs(settings)
    return [j.to_dict() for j in jobs.list_jobs(state, kind, limit, settings)]


ItemState = Literal["failed", "no-person", "all"]


def get_job(request: Request, job_id: str, items: ItemState | None = None) -> dict[str, Any]:
    # ``items=`` lists them all in the document: the small-job form; /items pages them.
    return jobs.job_document(job_id, items, request.app.state.config.settings)


def list_items(
    request: Request,
    job_id: str,
    state: ItemState = "all",
    limit: Annotated[int, Query(ge=1, le=jobs.MAX_ITEM_PAGE_SIZE)] = jobs.ITEM_PAGE_SIZE,
    cursor: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    page = jobs.ItemPageRequest(job_id, state, limit, cursor)
    return jobs.item_page(page, request.app.state.config.settings).to_dict()


def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    return jobs.cancel_job(job_id, request.app.state.config.settings).to_dict()


def list_checkpoints(request: Request, job: str | None = None) -> list[dict[str, Any]]:
    return jobs.checkpoint_documents(job, request.app.state.config.settings)


def register(app: FastAPI) -> None:
    """Add the routes to ``app`` (on the app itself, so each is matched by its template)."""
    app.post("/api/jobs", status_code=201, summary="Submit a job (remove_dir, train, evaluate)")(
        submit_job
    )
    app.get("/api/jobs", summary="Recent jobs, newest first (as `unetbg jobs --json`)")(list_jobs)
    app.get("/api/jobs/{job_id}", summary="One job (as `unetbg status JOB --json`)")(get_job)
    app.get(
        "/api/jobs/{job_id}/items",
        summary="A job's items, a page at a time by id (as `unetbg status JOB --items`)",
    )(list_items)
    app.post("/api/jobs/{job_id}/cancel", summary="Cancel a job (as `unetbg cancel JOB --json`)")(
        cancel_job
    )
    app.get("/api/checkpoints", summary="Checkpoints (as `unetbg checkpoints --json`)")(
        list_checkpoints
    )
