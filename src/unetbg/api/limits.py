"""Request body limits, answered as JSON like every other refusal.

Starlette enforces ``max_body_size`` (the app's for JSON bodies, ``/api/remove``'s for
uploads) while a body is read, and answers a plain-text "Content Too Large". A request
that declares its size (``Content-Length``, as every client sending a file does) is told
here instead, before a byte of it is read, in JSON with the limit and how to raise it.
Bodies sent without a length still meet Starlette's limit.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from unetbg.api.errors import answer

UPLOAD_HINT = "unetbg serve --max-upload-mb"


class DeclaredSizeLimit:
    """ASGI middleware: 413 JSON for a ``Content-Length`` over the matched route's
    ``max_body_size`` (FastAPI keeps it on the route), or over ``default`` elsewhere."""

    def __init__(self, app: ASGIApp, default: int, routes: list, upload_bytes: int) -> None:
        self.app, self.default, self.routes = app, default, routes
        self.upload_bytes = upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _content_length(scope) if scope["type"] == "http" else None
        limit = self._limit(scope) if declared is not None else None
        if limit is None or declared <= limit:
            await self.app(scope, receive, send)
            return
        if limit == self.default:
            detail = f"request body too large: {declared:,} bytes, the limit is {limit:,}"
        else:  # an upload route: its limit follows the per-image one
            detail = (
                f"upload too large: the request has {declared:,} bytes; the limit is "
                f"{self.upload_bytes:,} bytes per image ({UPLOAD_HINT})"
            )
        await answer(413, detail)(scope, receive, send)

    def _limit(self, scope: Scope) -> int:
        for route in self.routes:
            if route.matches(scope)[0] == Match.FULL:
                return getattr(route, "max_body_size", None) or self.default
        return self.default


def _content_length(scope: Scope) -> int | None:
    try:
        return int(Headers(scope=scope)["content-length"])
    except (KeyError, ValueError):
        return None
