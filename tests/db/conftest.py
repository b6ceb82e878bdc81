"""Real databases for the db tests: a SQLite file per test and, when the server is up,
a PostgreSQL database per test (created and dropped here)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from unetbg.db.session import get_engine
from unetbg.settings import mask_url

POSTGRES_ADMIN_URL = os.environ.get(
    "UNETBG_TEST_POSTGRES_URL", "postgresql+psycopg://unetbg:unetbg@127.0.0.1:5432/postgres"
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No UNETBG_* variables from the caller; the data dir is a fresh temporary folder."""
    for name in list(os.environ):
        if name.startswith("UNETBG_"):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("UNETBG_DATA_DIR", str(data_dir))
    return data_dir


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on the test server's maintenance database.

    Unreachable server: the test fails under CI (which starts the server) and is
    skipped, with the reason, elsewhere.
    """
    engine = create_engine(
        POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL at {mask_url(POSTGRES_ADMIN_URL)} is unreachable: {exc.orig}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason + " (set UNETBG_TEST_POSTGRES_URL or start it: scripts/services.sh)")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin: Engine) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database that is dropped after the test."""
    name = f"unetbg_test_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with postgres_admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each kind unetbg supports."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")
