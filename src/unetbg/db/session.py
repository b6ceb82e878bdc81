"""Engines and sessions.

One engine per database URL per process. Prefork workers must not reuse the
parent's pooled connections, so ``dispose_engines()`` runs after each fork
(see ``unetbg.workers.signals``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from unetbg.settings import get_settings

#: Seconds SQLite waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_S = 30

_engines: dict[str, Engine] = {}
_sessionmakers: dict[str, sessionmaker[Session]] = {}


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL. On a new file several processes connecting at once race
    for the switch, and SQLite answers the losers "database is locked" at once instead
    of waiting (the busy timeout does not cover it): try again until the timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # WAL lets readers run beside one writer; the busy timeout makes several
        # local worker processes queue for the write lock instead of failing.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # pysqlite's own transaction handling defers BEGIN and ignores busy_timeout for
    # lock upgrades; emitting BEGIN IMMEDIATE ourselves takes the write lock up front
    # so concurrent writers wait (busy_timeout) instead of raising "database is locked".
    @event.listens_for(engine, "connect")
    def _no_pysqlite_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def database_busy(exc: BaseException) -> str | None:
    """What to tell a person when ``exc`` is SQLite's "database is locked" (another
    process held the write lock for longer than the busy timeout), else ``None``."""
    if "database is locked" not in str(getattr(exc, "orig", None) or exc):
        return None
    return (
        f"the job database is busy: another process held its write lock for over "
        f"{SQLITE_BUSY_TIMEOUT_S} s (a large submission, or a stuck process); try again, "
        "or use PostgreSQL (UNETBG_DATABASE_URL) for many concurrent writers"
    )


def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: the configured database), created once per process."""
    url = url or get_settings().database_url
    engine = _engines.get(url)
    if engine is None:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
            )
            _configure_sqlite(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        _engines[url] = engine
    return engine


def get_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    url = url or get_settings().database_url
    maker = _sessionmakers.get(url)
    if maker is None:
        maker = sessionmaker(get_engine(url), expire_on_commit=False)
        _sessionmakers[url] = maker
    return maker


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Drop pooled connections inherited from a parent process (call after fork)."""
    for engine in _engines.values():
        # close=False: the parent still owns those sockets; just forget them here.
        engine.dispose(close=False)


def database_is_default_sqlite(url: str) -> bool:
    """True for the embedded default database (a SQLite file under the data dir)."""
    settings = get_settings()
    return url == f"sqlite:///{settings.data_dir / 'unetbg.sqlite3'}" and not os.environ.get(
        "UNETBG_DATABASE_URL"
    )
