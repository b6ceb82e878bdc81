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


#: The shortest job id prefix accepted (as with git hashes, any unique prefix at least
#: this long names its job).
MIN_PREFIX = 2


def find_job(session: Session, job_id: str, for_update: bool = False) -> Job:
    """The job row for ``job_id`` or a unique prefix of it (at least :data:`MIN_PREFIX`
    characters); raises :class:`JobNotFound` saying whether the prefix is unknown, too
    short or ambiguous (naming the jobs it matches)."""
    job_id = (job_id or "").strip()
    query = select(Job).where(Job.id == job_id)
    if for_update:
        query = query.with_for_update()
    job = session.scalars(query).first()
    if job is not None:
        return job
    if len(job_id) < MIN_PREFIX:
        raise JobNotFound(
            f"job id {job_id!r} is too short: give at least {MIN_PREFIX} characters of it "
            "(see `unetbg jobs`)"
        )
    matches = session.scalars(
        select(Job.id).where(Job.id.startswith(job_id, autoescape=True)).order_by(Job.id).limit(6)
    ).all()
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
        raise JobNotFound(
            f"job id prefix {job_id!r} is ambiguous: it matches {shown}; give more characters"
        )
    if not matches:
        raise JobNotFound(f"no job {job_id!r} (see `unetbg jobs`)")
    query = select(Job).where(Job.id == matches[0])
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one()
