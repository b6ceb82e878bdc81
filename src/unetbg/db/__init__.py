"""The job database: SQLAlchemy models, sessions and the packaged Alembic migrations."""

from __future__ import annotations

from unetbg.db.base import Base
from unetbg.db.models import Checkpoint, EpochMetric, Job, JobItem
from unetbg.db.schema import (
    SchemaOutOfDate,
    current,
    downgrade,
    ensure_schema,
    head_revision,
    upgrade,
)
from unetbg.db.session import (
    database_is_default_sqlite,
    dispose_engines,
    get_engine,
    get_sessionmaker,
    session_scope,
)

__all__ = [
    "Base",
    "Checkpoint",
    "EpochMetric",
    "Job",
    "JobItem",
    "SchemaOutOfDate",
    "current",
    "database_is_default_sqlite",
    "dispose_engines",
    "downgrade",
    "ensure_schema",
    "get_engine",
    "get_sessionmaker",
    "head_revision",
    "session_scope",
    "upgrade",
]
