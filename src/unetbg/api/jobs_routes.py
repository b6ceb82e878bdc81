"""``/api/jobs`` and ``/api/checkpoints``: the job service over HTTP.

Each answer is the document the CLI prints with ``--json`` for the same object
(:func:`unetbg.jobs.job_document`, :func:`unetbg.jobs.checkpoint_documents`,
:meth:`unetbg.jobs.JobView.to_dict`), so scripts can move between the two.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request

from unetbg import jobs
from unetbg.api.errors import ApiError
from unetbg.api.job_requests import JobRequest

router = APIRouter(prefix="/api")

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled", "partial"]
JobKind = Literal["train", "remove_dir", "evaluate"]


@router.post("/jobs", status_code=201, summary="Submit a job (remove_dir, train, evaluate)")
def submit_job(request: Request, body: Annotated[JobRequest, Body()]) -> dict[str, Any]:
    state = request.app.state
    job_id = body.create(state.config)
    try:
        state.runners.start(job_id)
    except jobs.JobError as exc:  # recorded, but the broker could not take it
        raise ApiError(503, str(exc)) from None
    return jobs.job_document(job_id, settings=state.config.settings)


@router.get("/jobs", summary="Recent jobs, newest first (as `unetbg jobs --json`)")
def list_jobs(
    request: Request,
    state: JobState | None = None,
    kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[dict[str, Any]]:
    settings = request.app.state.config.settings
    jobs.mark_lost_jobs(settings)
    return [j.to_dict() for j in jobs.list_jobs(state, kind, limit, settings)]


@router.get("/jobs/{job_id}", summary="One job (as `unetbg status JOB --json`)")
def get_job(
    request: Request, job_id: str, items: Literal["failed", "all"] | None = None
) -> dict[str, Any]:
    return jobs.job_document(job_id, items, request.app.state.config.settings)


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job (as `unetbg cancel JOB --json`)")
def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    return jobs.cancel_job(job_id, request.app.state.config.settings).to_dict()


@router.get("/checkpoints", summary="Checkpoints (as `unetbg checkpoints --json`)")
def list_checkpoints(request: Request, job: str | None = None) -> list[dict[str, Any]]:
    return jobs.checkpoint_documents(job, request.app.state.config.settings)
