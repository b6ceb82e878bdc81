"""The job database as the service uses it: a checked transaction, a job found by id."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.orm import Session

from unetbg.db.models import Job
from unetbg.db.schema import ensure_schema
from unetbg.db.session import session_scope
from unetbg.jobs.errors import JobNotFound
from unetbg.settings import Settings, get_settings


@contextmanager
def db_session(settings: Settings | None = None) -> Iterator[Session]:
    """A transaction on the configured database, its schema checked first.

    The embedded SQLite file is created/migrated on first use; a configured database
    that is behind raises ``SchemaOutOfDate`` (run ``unetbg db upgrade``).
    """
    settings = settings or get_settings()
    ensure_schema(settings.database_url)
    with session_scope(settings.database_url) as session:
        yield session


def find_job(session: Session, job_id: str, for_update: bool = False) -> Job:
    """The job row for ``job_id`` or a unique prefix of it; raises :class:`JobNotFound`."""
    job_id = (job_id or "").strip()
    query = select(Job).where(Job.id == job_id)
    if for_update:
        query = query.with_for_update()
    job = session.scalars(query).first()
    if job is None and len(job_id) >= 4:
        # A unique prefix is enough, as with git hashes.
        matches = session.scalars(select(Job).where(Job.id.startswith(job_id)).limit(2)).all()
        if len(matches) == 1:
            job = matches[0]
        elif len(matches) > 1:
            raise JobNotFound(f"job id prefix {job_id!r} is ambiguous; give more characters")
    if job is None:
        raise JobNotFound(f"no job {job_id!r} (see `unetbg jobs`)")
    return job
