"""Where a remove-dir job reads its inputs and writes its outputs: a local folder, or a
prefix in S3-compatible object storage (``s3://bucket/prefix``).

One abstraction, :class:`Storage`, with two kinds: :class:`LocalStorage` (paths are
:class:`pathlib.Path`; the folder planner, :func:`unetbg.images.read_image` and the
atomic file write) and :class:`ObjectStorage` (locations are :class:`ObjectPath`;
objects read and written through fsspec's ``s3fs``). :func:`location` turns what a job
records (a string) back into one of the two, and :func:`storage_for` picks the kind that
serves it, so the planner, the removal loop and the worker never ask "is this S3?".

Object storage
--------------
* Credentials, region and endpoint are found as every AWS tool finds them
  (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and
  ``~/.aws/config``, ``AWS_ENDPOINT_URL`` for MinIO, Ceph or another S3 API), by botocore
  in each process that touches the objects: the submitter (it lists the prefixes) and
  every worker (they read and write the objects directly; no shared disk is needed).
* An output appears only when complete: it is encoded in memory and sent as one PUT,
  which S3 makes visible all at once or not at all (multipart above 100 MB, which S3
  also publishes whole when the upload completes). Without ``--overwrite`` the PUT is
  conditional (``If-None-Match: *``): an object that appeared after planning is left
  alone and the item skipped, as a file is.
* Planning lists the input prefix and the output prefix once each (one LIST request per
  1,000 keys), rather than asking for each output (a HEAD per image).
* Hidden names (a key part starting with ``.``), "folder" marker keys and keys without an
  image extension are treated as the folder planner treats them; there are no symlinks.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from unetbg.images import ImageError, read_image
from unetbg.removal.formats import output_suffix
from unetbg.removal.names import unique_output_names
from unetbg.removal.planning import (
    IMAGE_EXTENSIONS,
    SKIP_EXISTS,
    SKIP_NOT_IMAGE,
    PlanError,
    PlannedItem,
)

if TYPE_CHECKING:
    import numpy as np

#: The URL schemes served by :class:`ObjectStorage`, and the package each needs.
SCHEMES = {"s3": "s3fs"}
#: How to install what object storage needs (named in every error about it).
INSTALL_HINT = "pip install 'unetbg[s3]'"


class StorageUnavailable(PlanError):
    """A location needs a package that is not installed here (``s3fs`` for ``s3://``)."""


@dataclass(frozen=True, order=True)
class ObjectPath:
    """``scheme://bucket/key``: an object, or a prefix that holds objects like a folder.

    Offers the few path operations planning and writing use (``/``, ``name``,
    ``suffix``, ``parent``, ``relative_to``, ``is_relative_to``) with ``/`` as the only
    separator. Deliberately not :class:`os.PathLike`: a local file call given an object
    location fails loudly instead of reading a local path named ``s3:/…``.
    """

    scheme: str
    bucket: str
    key: str = ""  # no leading or trailing "/"; "" is the bucket itself

    @classmethod
    def parse(cls, url: str) -> ObjectPath:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in SCHEMES:
            raise PlanError(f"{url!r} is not an object storage URL ({_schemes()})")
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise PlanError(f"{url!r} names no bucket: write {scheme}://BUCKET/PREFIX")
        parts = [p for p in key.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise PlanError(f"{url!r}: '.' and '..' have no meaning in an object key")
        return cls(scheme, bucket, "/".join(parts))

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}".rstrip("/")

    @property
    def path(self) -> str:
        """``bucket/key``, as fsspec names it."""
        return f"{self.bucket}/{self.key}".rstrip("/")

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.key).suffix

    @property
    def parent(self) -> ObjectPath:
        parent = str(PurePosixPath(self.key).parent)
        return ObjectPath(self.scheme, self.bucket, "" if parent == "." else parent)

    def __truediv__(self, relative: str | PurePosixPath) -> ObjectPath:
        key = PurePosixPath(self.key or "/", relative).as_posix().lstrip("/")
        return ObjectPath(self.scheme, self.bucket, key)

    def is_relative_to(self, other: object) -> bool:
        if not isinstance(other, ObjectPath) or (other.scheme, other.bucket) != (
            self.scheme,
            self.bucket,
        ):
            return False
        return not other.key or self.key == other.key or self.key.startswith(other.key + "/")

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        if not self.is_relative_to(other):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self.key[len(other.key) :].lstrip("/"))


Location = Path | ObjectPath


def is_url(value: object) -> bool:
    """Whether ``value`` names object storage (``s3://…``) rather than a local path."""
    return isinstance(value, ObjectPath) or (
        isinstance(value, str) and value.partition("://")[0] in SCHEMES and "://" in value
    )


def location(value: str | os.PathLike | ObjectPath) -> Location:
    """What a job records (a string) as a location: an :class:`ObjectPath` for
    ``s3://…``, else the :class:`~pathlib.Path` as given."""
    if isinstance(value, ObjectPath):
        return value
    if is_url(value):
        return ObjectPath.parse(value)
    return Path(value)


def job_location(value: str | os.PathLike | ObjectPath) -> Location:
    """A job's input or output root as recorded: a local path expanded and resolved
    (workers run in other folders, or on other machines), an URL normalised."""
    found = location(value)
    return found if isinstance(found, ObjectPath) else found.expanduser().resolve()


def _schemes() -> str:
    return ", ".join(f"{scheme}://" for scheme in SCHEMES)


# ------------------------------------------------------------------------ the abstraction


class Storage(Protocol):
    """Where inputs are read from and outputs written to."""

    def plan(
        self, input_root: Any, output_root: Any, output_format: str, overwrite: bool
    ) -> list[PlannedItem]:
        """Every input under ``input_root`` and its output under ``output_root``."""
        ...

    def read_image(self, source: Any, max_pixels: int | None) -> np.ndarray:
        """The image at ``source`` as ``H×W×3`` RGB; :class:`ImageError` if unreadable."""
        ...

    def write(self, item: PlannedItem, data: bytes) -> Any:
        """Publish ``data`` at ``item.output``, whole or not at all (``OutputExistsError``
        when ``item.overwrite`` is false and an output is already there)."""
        ...


class LocalStorage:
    """Local (or shared-filesystem) folders: the folder planner and atomic file writes."""

    def plan(
        self, input_root: Path, output_root: Path, output_format: str, overwrite: bool
    ) -> list[PlannedItem]:
        from unetbg.removal.planning import plan_folder

        return plan_folder(input_root, output_root, output_format, overwrite=overwrite)

    def read_image(self, source: Path, max_pixels: int | None) -> np.ndarray:
        return read_image(source, max_pixels)

    def write(self, item: PlannedItem, data: bytes) -> Path:
        from unetbg.removal.outputs import write_encoded

        return write_encoded(item, data)


class ObjectStorage:
    """An S3-compatible object store, through ``s3fs`` (see the module docstring)."""

    def __init__(self, scheme: str = "s3") -> None:
        self.scheme = scheme

    def plan(
        self,
        input_root: ObjectPath,
        output_root: ObjectPath,
        output_format: str,
        overwrite: bool,
    ) -> list[PlannedItem]:
        """As :func:`~unetbg.removal.planning.plan_folder` plans a folder: sorted by key,
        outputs named by the same rule, existing outputs skipped unless ``overwrite``.
        Raises :class:`PlanError` (nothing recorded yet) when the prefixes overlap, a
        bucket is missing, the credentials are refused or the endpoint cannot be
        reached."""
        from unetbg.removal.planning import _check_disjoint

        _check_disjoint(input_root, output_root)
        keys = self._list(input_root, "input")
        existing = set() if overwrite else self._list(output_root, "output")
        entries: list[tuple[ObjectPath, PurePosixPath, str | None]] = []
        for key in sorted(keys):
            source = ObjectPath(self.scheme, input_root.bucket, key)
            relative = source.relative_to(input_root)
            if any(part.startswith(".") for part in relative.parts):
                continue  # hidden, as the folder walk leaves hidden names out
            reason = None if relative.suffix.lower() in IMAGE_EXTENSIONS else SKIP_NOT_IMAGE
            entries.append((source, relative, reason))
        todo = [i for i, entry in enumerate(entries) if entry[2] is None]
        names = unique_output_names(
            [Path(entries[i][1]) for i in todo], output_suffix(output_format)
        )
        outputs = {i: output_root / name.as_posix() for i, name in zip(todo, names, strict=True)}
        items = []
        for i, (source, relative, reason) in enumerate(entries):
            output = outputs.get(i)
            if output is not None and output.key in existing:
                reason = SKIP_EXISTS
            items.append(
                PlannedItem(source, Path(relative), output, reason, output_root, overwrite)
            )
        return items

    def _list(self, root: ObjectPath, what: str) -> set[str]:
        """Every key under the prefix ``root`` (one LIST request per 1,000 keys)."""
        return set(self.versions(root, what))

    def versions(self, root: ObjectPath, what: str = "input") -> dict[str, tuple[int, str]]:
        """Each key under the prefix ``root`` with its ``(size, ETag)``: what tells one
        upload of an object from the next (``remove-dir --watch`` polls it). Listed
        afresh each time: s3fs would otherwise answer from its listing cache."""
        fs = filesystem(root.scheme)
        try:
            fs.invalidate_cache(root.path)
            if root.key and fs.isfile(root.path):
                raise PlanError(f"{what} {root} is an object, not a prefix (a 'folder')")
            found = fs.find(root.path, detail=True)
        except PlanError:
            raise
        except FileNotFoundError:
            raise PlanError(
                f"cannot list {what} {root}: bucket {root.bucket!r} does not exist"
            ) from None
        except PermissionError as exc:
            raise PlanError(
                f"cannot list {what} {root}: access denied ({exc}); check the AWS "
                "credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - botocore's many: credentials, endpoint
            raise PlanError(
                f"cannot list {what} {root}: {type(exc).__name__}: {exc}{_endpoint_note()}"
            ) from None
        return {
            name.split("/", 1)[1]: (int(info.get("size") or 0), str(info.get("ETag", "")))
            for name, info in found.items()
            if info.get("type") == "file" and not name.endswith("/")
        }

    def read_image(self, source: ObjectPath, max_pixels: int | None) -> np.ndarray:
        try:
            data = filesystem(source.scheme).cat_file(source.path)
        except FileNotFoundError:
            raise ImageError("object not found", source) from None
        except PermissionError:
            raise ImageError("access denied", source) from None
        except StorageUnavailable as exc:
            raise ImageError(str(exc), source) from None
        except Exception as exc:  # noqa: BLE001 - a network or service error, this item's
            raise ImageError(f"cannot read object: {type(exc).__name__}: {exc}", source) from None
        return read_image(io.BytesIO(data), max_pixels)

    def write(self, item: PlannedItem, data: bytes) -> ObjectPath:
        from unetbg.removal.outputs import OutputExistsError

        output = _checked_object_output(item)
        fs = filesystem(output.scheme)
        try:
            # One PUT of the finished bytes: visible whole or not at all. "create" sends
            # If-None-Match: *, so an object that appeared after planning is not replaced.
            fs.pipe_file(output.path, data, mode="overwrite" if item.overwrite else "create")
        except FileExistsError:
            raise OutputExistsError(17, SKIP_EXISTS, str(output)) from None
        return output


def _checked_object_output(item: PlannedItem) -> ObjectPath:
    output = item.output
    if not isinstance(output, ObjectPath):
        raise ValueError(f"{item.source} has no planned object output")
    root = item.output_root
    if isinstance(root, ObjectPath) and not output.is_relative_to(root):
        raise PlanError(f"refusing to write outside the output prefix {root}")
    if output == item.source:
        raise PlanError("refusing to overwrite the input")
    return output


def _endpoint_note() -> str:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return f" (endpoint {endpoint})" if endpoint else ""


_LOCAL = LocalStorage()


def storage_for(where: Location | str) -> Storage:
    """The storage that serves ``where`` (a location or what a job recorded)."""
    found = location(where) if isinstance(where, str) else where
    if isinstance(found, ObjectPath):
        return ObjectStorage(found.scheme)
    return _LOCAL


def plan_job(
    input_root: Location, output_root: Location, output_format: str, overwrite: bool
) -> list[PlannedItem]:
    """Plan a remove-dir job whose input and output are both object storage prefixes;
    raises :class:`PlanError` for a mix (one local, one in object storage: not supported,
    the planner of each side would see only half). Local pairs are the folder planner's."""
    remote = [isinstance(root, ObjectPath) for root in (input_root, output_root)]
    if any(remote) and not all(remote):
        raise PlanError(
            f"input {input_root} and output {output_root} must both be local folders or "
            f"both object storage ({_schemes()})"
        )
    return storage_for(input_root).plan(input_root, output_root, output_format, overwrite)


def in_batches(items: list[PlannedItem], size: int) -> Iterator[list[PlannedItem]]:
    """``items`` in lists of ``size`` (at least one list, empty for an empty plan)."""
    yield items[:size]
    for start in range(size, len(items), size):
        yield items[start : start + size]


# ------------------------------------------------------------------- object store clients

_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()
#: The environment a client is made from: another value makes another client.
_CLIENT_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


def filesystem(scheme: str = "s3") -> Any:
    """This process's fsspec filesystem for ``scheme``; :class:`StorageUnavailable`
    naming the extra to install when its package is missing.

    Made on first use in each process (a prefork worker's child makes its own) and
    remade when the AWS environment it was made from changes. The listings cache is
    off: a second run must see the outputs the first one wrote.
    """
    package = SCHEMES[scheme]
    try:
        module = __import__(package)
    except ImportError:
        raise StorageUnavailable(
            f"{scheme}:// paths need the {package} package: {INSTALL_HINT}"
        ) from None
    key = (scheme, os.getpid(), *(os.environ.get(name) for name in _CLIENT_ENV))
    with _clients_lock:
        if key not in _clients:
            _clients[key] = module.S3FileSystem(use_listings_cache=False, skip_instance_cache=True)
        return _clients[key]
