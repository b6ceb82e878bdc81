"""Refusals as JSON answers: ``{"detail": "…"}`` with a 4xx status, as FastAPI's own.

:class:`ApiError` carries a status; the job service's refusals map by type
(:data:`SERVICE_STATUS`), so a client reads the same message the CLI prints.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from unetbg.db.schema import SchemaOutOfDate
from unetbg.db.session import database_busy
from unetbg.images import ImageError
from unetbg.jobs import JobError, JobNotFound, NoCheckpointError
from unetbg.jobs.errors import BrokerUnreachable


class ApiError(Exception):
    """A request refused with ``status`` and a message for the person who sent it."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


#: Refusals of the layers below, most specific first: exception type -> HTTP status.
SERVICE_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (JobNotFound, 404),
    # Nothing recorded: the client may try again once the broker is back.
    (BrokerUnreachable, 503),
    (NoCheckpointError, 400),
    (JobError, 400),
    (ImageError, 400),
    # The database is behind this code: the operator must run `unetbg db upgrade`.
    (SchemaOutOfDate, 503),
)


def answer(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def install_handlers(app: FastAPI) -> None:
    """Answer :class:`ApiError`, the service's refusals and HTTP errors as JSON."""

    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return answer(exc.status, exc.detail, exc.headers)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Starlette's body limit raises one with the bare reason "Content Too Large".
        detail = exc.detail
        if exc.status_code == 413:
            detail = "upload too large: " + _limit_text(request)
        return answer(exc.status_code, str(detail), getattr(exc, "headers", None))

    async def database_error(request: Request, exc: OperationalError) -> JSONResponse:
        # SQLite's write lock held past the busy timeout (a large submission elsewhere):
        # nothing was changed, and the same request succeeds once the lock is free.
        message = database_busy(exc)
        if message is None:
            raise exc
        return answer(503, message, {"Retry-After": "10"})

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(OperationalError, database_error)
    for exc_type, status in SERVICE_STATUS:
        app.add_exception_handler(exc_type, _refusal(status))


def _refusal(status: int):
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return answer(status, str(exc))

    return handler


def _limit_text(request: Request) -> str:
    limit = request.app.state.config.max_upload_bytes
    return f"the limit is {limit:,} bytes per image (unetbg serve --max-upload-mb)"
