"""``remove-dir s3://BUCKET/IN s3://BUCKET/OUT --watch``: an object-store prefix watched by
polling.

Object stores send no events to a client, so the prefix is listed every ``poll_s``
seconds (one LIST request per 1,000 keys) and each key whose ``(size, ETag)`` was not
queued before becomes an item, as a new or changed file does in a watched folder. An
object is complete once it is listed (an upload appears whole, multipart ones included),
so nothing waits for a settle period. Not watched, as in a folder: hidden names
(``.name`` in any part of the key), keys without an image extension, and anything under
the output prefix. The rest is :class:`~unetbg.watch.session.WatchSession`'s loop:
the job, its chunks, Ctrl-C or SIGTERM, the watch beat.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from unetbg import jobs
from unetbg.jobs.watched import Added, add_watched_objects
from unetbg.removal.planning import IMAGE_EXTENSIONS, PlanError
from unetbg.removal.storage import ObjectPath, ObjectStorage, location
from unetbg.settings import Settings
from unetbg.watch.session import WatchSession

#: Seconds between two listings of the prefix: each costs a request per 1,000 keys.
DEFAULT_POLL_S = 5.0


class PrefixWatchSession(WatchSession):
    """One ``remove-dir --watch`` run on an object-store prefix (module docstring)."""

    def __init__(
        self,
        input_url: str,
        output_url: str,
        poll_s: float = DEFAULT_POLL_S,
        on_update: Callable[[jobs.JobView], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.input_dir, self.output_dir = location(input_url), location(output_url)
        if not isinstance(self.input_dir, ObjectPath):
            raise ValueError(f"{input_url} is not an object storage prefix")
        self.storage = ObjectStorage(self.input_dir.scheme)
        self.poll_s = poll_s
        self._next_look = 0.0
        self._lost: str | None = None
        self._common(on_update, on_note, settings)

    def wanted(self, url: ObjectPath) -> bool:
        """Whether the object ``url`` is an image to watch (module docstring)."""
        if url.is_relative_to(self.output_dir) or not url.is_relative_to(self.input_dir):
            return False
        if any(part.startswith(".") for part in url.relative_to(self.input_dir).parts):
            return False
        return url.suffix.lower() in IMAGE_EXTENSIONS

    def _start(self) -> None:
        pass  # nothing to subscribe to: the loop lists the prefix itself

    def _stop(self) -> None:
        pass

    def _listing(self) -> dict[ObjectPath, tuple[int, str]]:
        """Every wanted object under the prefix now, with its version."""
        root = self.input_dir
        return {
            url: version
            for key, version in self.storage.versions(root).items()
            if self.wanted(url := ObjectPath(root.scheme, root.bucket, key))
        }

    def _remember(self, job_id: str) -> None:
        # The job's own listing (a moment ago) made its items: those versions are queued.
        listed = self._listing()
        for item in jobs.list_items(job_id, settings=self.settings):
            url = location(item.source_path)
            if url in listed:
                self.queued[url] = listed[url]
        self._next_look = time.monotonic() + self.poll_s

    def _due(self, now: float) -> dict:
        if now < self._next_look:
            return {}
        self._next_look = now + self.poll_s
        try:
            listed = self._listing()
        except PlanError as exc:  # the bucket went away, the credentials were revoked
            self._lost = str(exc)
            return {}
        return {url: v for url, v in listed.items() if self.queued.get(url) != v}

    def _alive(self) -> bool:
        if self._lost is not None:
            self.on_note(f"cannot list {self.input_dir} any more: {self._lost}")
        return self._lost is None

    def _add_to_job(self, job_id: str, candidates: dict) -> Added:
        return add_watched_objects(job_id, candidates, self.settings)
