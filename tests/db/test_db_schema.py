"""ensure_schema: the default SQLite migrates itself; a configured database must be current."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import make_url, text

from service_fixtures import wait_until
from unetbg.db import (
    SchemaOutOfDate,
    current,
    database_is_default_sqlite,
    ensure_schema,
    get_engine,
    head_revision,
    upgrade,
)
from unetbg.settings import get_settings


def test_default_sqlite_migrates_itself_on_first_use(embedded_env: Path):
    url = get_settings().database_url
    assert database_is_default_sqlite(url)
    assert not embedded_env.exists()

    ensure_schema()

    assert (embedded_env / "unetbg.sqlite3").is_file()
    assert current(url) == head_revision()
    ensure_schema()  # already current: nothing to do, no error
    assert current(url) == head_revision()


def test_configured_database_behind_raises(embedded_env: Path, db_url: str, monkeypatch):
    monkeypatch.setenv("UNETBG_DATABASE_URL", db_url)
    assert not database_is_default_sqlite(db_url)

    with pytest.raises(SchemaOutOfDate, match=r"is empty .*run `unetbg db upgrade`"):
        ensure_schema()
    assert current(db_url) is None, "a configured database must not be migrated implicitly"

    upgrade(db_url)
    ensure_schema()


def test_out_of_date_message_masks_the_password(embedded_env: Path, postgres_url: str, monkeypatch):
    monkeypatch.setenv("UNETBG_DATABASE_URL", postgres_url)
    with pytest.raises(SchemaOutOfDate) as caught:
        ensure_schema()
    message = str(caught.value)
    assert ":***@" in message
    assert ":unetbg@" not in message


def test_revision_from_a_newer_release_is_reported(
    embedded_env: Path, sqlite_url: str, monkeypatch
):
    upgrade(sqlite_url)
    with get_engine(sqlite_url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    monkeypatch.setenv("UNETBG_DATABASE_URL", sqlite_url)
    with pytest.raises(SchemaOutOfDate, match="does not know.*upgrade unetbg"):
        ensure_schema()


def test_processes_starting_together_migrate_the_default_sqlite_once(embedded_env: Path):
    go = embedded_env.parent / "go"
    code = (
        "import os, time\n"
        "from unetbg.db import ensure_schema\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
        "ensure_schema()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
    env["UNETBG_DATA_DIR"] = str(embedded_env)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert current(get_settings().database_url) == head_revision()


def test_concurrent_upgrades_of_one_postgresql_database_run_once(postgres_url: str):
    # Several `unetbg db upgrade` runs at once (two operators, two deploy scripts). To make
    # them collide for sure, an uncommitted alembic_version table holds every upgrade at a
    # lock until all four are waiting; then they are let go together.
    database = make_url(postgres_url).database
    engine = get_engine(postgres_url)

    def waiting() -> int:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = :db AND wait_event_type = 'Lock'"
                ),
                {"db": database},
            ).scalar()

    code = "import sys\nfrom unetbg.db import upgrade\nupgrade(sys.argv[1])\n"
    with engine.connect() as blocker:
        blocker.execute(text("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL)"))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, postgres_url], stderr=subprocess.PIPE, text=True
            )
            for _ in range(4)
        ]
        wait_until(
            lambda: waiting() == 4 or any(p.poll() is not None for p in procs),
            120,
            "every upgrade to wait on a lock",
        )
        blocker.rollback()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert current(postgres_url) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
