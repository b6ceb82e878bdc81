"""The frozen configuration of one API server (``unetbg serve``'s options)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from unetbg.settings import Settings

#: Images waiting for the model, beyond which ``POST /api/remove`` answers 503.
DEFAULT_QUEUE_SIZE = 32
#: Queued images the inference thread runs through the network together.
DEFAULT_BATCH_SIZE = 4


def parse_roots(text: str | None) -> tuple[Path, ...]:
    """``UNETBG_API_ROOTS`` (folders joined by ``os.pathsep``) as paths; blanks dropped."""
    return tuple(Path(part) for part in (text or "").split(os.pathsep) if part.strip())


@dataclass(frozen=True)
class ApiConfig:
    """What one server needs besides the process-wide :class:`Settings`.

    ``key``: the bearer token every request but ``/healthz`` must carry. ``roots``:
    folders the jobs' server-side paths must lie under (resolved, symlinks included);
    none means no job that names a path is accepted. ``max_upload_bytes``: the largest
    image ``/api/remove`` takes. ``queue_size`` / ``batch_size``: the removal queue.
    ``checkpoint``: the default model of ``/api/remove`` (``best``, ``default``, a
    registered id or a path), resolved per request so a newly registered best is used.
    ``device``, ``backend``: how that model runs (:class:`unetbg.removal.RunOptions`).
    """

    key: str
    settings: Settings
    roots: tuple[Path, ...] = ()
    max_upload_bytes: int = 25 * 2**20
    queue_size: int = DEFAULT_QUEUE_SIZE
    batch_size: int = DEFAULT_BATCH_SIZE
    checkpoint: str = "best"
    device: str = "auto"
    backend: str = "auto"
    resolved_roots: tuple[Path, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("the API needs a key")
        for name in ("max_upload_bytes", "queue_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for root in self.roots:
            if not Path(root).expanduser().is_dir():
                raise ValueError(f"API root {root} is not a folder")
        # Resolved once: a root that is a symlink still contains what its target holds.
        resolved = tuple(Path(r).expanduser().resolve() for r in self.roots)
        object.__setattr__(self, "resolved_roots", resolved)
