"""The API key: every request but the health check and the documentation must carry
``Authorization: Bearer KEY``; there is never a server without a key.

* a configured key (``UNETBG_API_KEY``) is used as it is;
* without one, a server on a loopback address makes a random key at start and writes it
  to ``<data dir>/api-key`` (mode 0600), as Jupyter does with its token: only users who
  can read that file can call the API;
* a server on any other address refuses to start without a configured key
  (:func:`key_for`).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from unetbg.api.errors import answer
from unetbg.settings import Settings

#: Paths anyone may read: the health check, and the API's own description (it tells
#: nothing the published docs do not; the endpoints it lists still need the key).
PUBLIC_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
#: Where the docs page's script, style and icon are served from (public, as the page).
DOCS_ASSETS = "/docs/assets"
KEY_FILE = "api-key"


class NoKeyError(Exception):
    """A non-loopback address was asked for without a configured key."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) reaches only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def key_for(host: str, settings: Settings) -> tuple[str, Path | None]:
    """The key a server on ``host`` uses, and the file a generated one was written to
    (``None`` for a configured key). Raises :class:`NoKeyError` off loopback without
    a configured key."""
    if settings.api_key:
        return settings.api_key, None
    if not is_loopback(host):
        raise NoKeyError(
            f"refusing to listen on {host} without an API key: set UNETBG_API_KEY "
            "(e.g. to the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), "
            "or listen on 127.0.0.1"
        )
    key = secrets.token_urlsafe(32)
    path = settings.data_dir / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600, and set so again: an older file may have been readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(key + "\n")
    return key, path


class BearerAuth:
    """ASGI middleware: 401 (``WWW-Authenticate: Bearer``) without the right key.

    A middleware, not a route dependency, so a refused upload is answered before its
    body is read.
    """

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.startswith(DOCS_ASSETS + "/"):
            await self.app(scope, receive, send)
            return
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key):
            await self.app(scope, receive, send)
            return
        reason = "missing API key" if not token else "wrong API key"
        response = answer(
            401,
            f"{reason}: send the header 'Authorization: Bearer KEY' (the key is "
            "UNETBG_API_KEY, or the api-key file `unetbg serve` names at start)",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
