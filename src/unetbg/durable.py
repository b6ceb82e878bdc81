"""Durable files: atomic writes, their temporary names, clearing stale ones, SHA-256.

One implementation for every file unetbg writes that a crash must not leave half
written: output images (:mod:`unetbg.images`), checkpoints
(:mod:`unetbg.model.checkpoint`). A leaf module: it imports only the standard library,
so every layer may use it, ``model/`` included (docs/architecture.md).

A write goes to a hidden temporary beside the target, ``.NAME.<12 hex>.tmp``, is
fsynced, then renamed over the target (``os.replace``) or, without ``overwrite``,
hard-linked to it (``os.link`` never replaces a file that appeared meanwhile).
:func:`temporary_target` recognises such a temporary, so a job can remove what a
killed writer left (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

_TEMPORARY_HEX_BYTES = 6
_TEMPORARY = re.compile(rf"\.(?P<name>.+)\.[0-9a-f]{{{2 * _TEMPORARY_HEX_BYTES}}}\.tmp")


def temporary_name(path: Path) -> Path:
    """A fresh temporary for ``path``, in the same folder (so the rename is atomic).

    Hidden, so folder scans (``removal.plan_folder``) never pick it up.
    """
    return path.parent / f".{path.name}.{secrets.token_hex(_TEMPORARY_HEX_BYTES)}.tmp"


def temporary_target(name: str) -> str | None:
    """The file name whose unfinished atomic write left a file called ``name``.

    ``None`` when ``name`` is not such a temporary. Lets a job clean up after a writer
    that was killed mid-write.
    """
    match = _TEMPORARY.fullmatch(name)
    return match["name"] if match else None


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = True) -> Iterator[BinaryIO]:
    """A binary file handle whose content appears at ``path`` only once fully written.

    Readers see the old file or the new one, never a part. On any failure the
    temporary is removed and an existing ``path`` is untouched. With
    ``overwrite=False`` an existing ``path`` raises ``FileExistsError`` and is left
    alone, even one that appears while the data is being written.
    """
    path = Path(path)
    tmp = temporary_name(path)
    # os.open with 0o666 lets the umask decide the final permissions, as a plain
    # open() of the target would (mkstemp would force 0o600 and hide checkpoints from
    # workers running as another user).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _publish_new(tmp: Path, path: Path) -> None:
    """Give the finished ``tmp`` the name ``path`` only if nothing has it yet.

    ``os.link`` fails with ``FileExistsError`` instead of replacing, so a file created
    after the caller checked is never lost.
    """
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        # File systems without hard links (FAT, some network shares): check, then
        # rename. Not race-free there, but an existing file is still never replaced
        # knowingly.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform/filesystem.
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(dfd)


def remove_stale_temporaries(outputs: Iterable[str | os.PathLike]) -> int:
    """Delete the temporaries that a writer killed mid-write left beside ``outputs``.

    Call it only where nothing else writes those outputs (the job service: when a job
    is recorded, before any of its chunks runs, and when a chunk re-claims the images
    of a dead attempt); such a file can then only be a remnant. Returns how many were
    removed.
    """
    wanted: dict[str, set[str]] = {}
    for output in map(os.fspath, outputs):
        if "://" in output:  # object storage: one PUT leaves no temporary behind
            continue
        folder, name = os.path.split(output)  # strings: a million outputs at a time
        wanted.setdefault(folder, set()).add(name)
    removed = 0
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # no folder yet: nothing was written there
            continue
        for entry in entries:
            if temporary_target(entry.name) in names and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
