"""Server-side paths: a job may name only what lies under the configured roots.

Every path is resolved first (``~``, ``..`` and symlinks, the not yet existing tail of an
output folder included), so a link inside a root that points outside it is refused too.
"""

from __future__ import annotations

from pathlib import Path

from unetbg.api.errors import ApiError
from unetbg.weights import DEFAULT_SPEC

NO_ROOTS = (
    "this server accepts no paths: start it with --root DIR (repeatable) or set "
    "UNETBG_API_ROOTS to folders joined by ':' to let jobs read and write under them"
)


def checked_path(value: str, what: str, roots: tuple[Path, ...]) -> Path:
    """``value`` resolved, if it lies under one of ``roots`` (resolved); otherwise
    :class:`ApiError` 403 saying why (400 for a relative path: relative to what?)."""
    if not roots:
        raise ApiError(403, f"{what} {value!r} refused: {NO_ROOTS}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ApiError(400, f"{what} must be an absolute path on the server, got {value!r}")
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise ApiError(403, f"{what} {resolved} is outside the API roots ({allowed})")
    return resolved


def checked_checkpoint(spec: str, roots: tuple[Path, ...]) -> str:
    """A checkpoint spec a client may ask for: ``best``, ``default`` and registered ids
    (files the server chose) as they are; a path only under the roots, resolved."""
    if spec in ("best", DEFAULT_SPEC) or spec.isdigit():
        return spec
    if not Path(spec).expanduser().is_absolute():
        raise ApiError(
            400,
            f"no checkpoint {spec!r}: checkpoint takes best, default, a registered "
            "checkpoint id (GET /api/checkpoints) or an absolute path on the server",
        )
    return str(checked_path(spec, "checkpoint", roots))
