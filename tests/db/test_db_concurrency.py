"""Several processes writing to one SQLite file: no lost updates, no "database is locked"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from unetbg.db import Job, JobItem, session_scope, upgrade

PROCESSES = 4
INCREMENTS = 50

# Even steps increment in SQL; odd steps read the row and write it back through the ORM,
# which only stays correct because each transaction takes the write lock up front.
WRITER = """
import os, sys, time
from sqlalchemy import update
from unetbg.db import Job, JobItem, session_scope

url, job_id, worker, count, go = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
while not os.path.exists(go):
    time.sleep(0.005)
for i in range(count):
    with session_scope(url) as session:
        if i % 2 == 0:
            session.execute(
                update(Job).where(Job.id == job_id).values(progress_done=Job.progress_done + 1)
            )
        else:
            job = session.get(Job, job_id)
            job.progress_done = job.progress_done + 1
        session.add(JobItem(job_id=job_id, source_path=f"w{worker}/{i}.jpg", state="succeeded"))
"""


def test_concurrent_writers_lose_no_updates(tmp_path: Path, sqlite_url: str):
    upgrade(sqlite_url)
    with session_scope(sqlite_url) as session:
        session.add(Job(id="shared", kind="remove_dir", progress_total=PROCESSES * INCREMENTS))
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, sqlite_url, "shared", str(w), str(INCREMENTS), str(go)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(PROCESSES)
    ]
    go.touch()
    errors = [p.communicate(timeout=300)[1] for p in procs]

    assert not any("database is locked" in e for e in errors), errors
    assert [p.returncode for p in procs] == [0] * PROCESSES, errors
    with session_scope(sqlite_url) as session:
        assert session.get(Job, "shared").progress_done == PROCESSES * INCREMENTS
        assert session.scalar(select(func.count(JobItem.id))) == PROCESSES * INCREMENTS
        sources = set(session.scalars(select(JobItem.source_path)))
    assert sources == {f"w{w}/{i}.jpg" for w in range(PROCESSES) for i in range(INCREMENTS)}


def _connect_when(url: str, go: str) -> None:
    import time

    from sqlalchemy import text

    from unetbg.db.session import get_engine

    while not os.path.exists(go):
        time.sleep(0.001)
    with get_engine(url).begin() as conn:  # as ensure_schema's first write does
        conn.execute(text("CREATE TABLE IF NOT EXISTS seen (pid INTEGER)"))
        conn.execute(text("INSERT INTO seen VALUES (:pid)"), {"pid": os.getpid()})


def test_processes_opening_a_new_sqlite_file_together_all_get_in(tmp_path: Path):
    # The switch to WAL on a new file is a race SQLite does not make the losers wait for:
    # they were told "database is locked" at once (seen under CI load as a failed start).
    import multiprocessing

    from sqlalchemy import text

    from unetbg.db.session import get_engine

    fork = multiprocessing.get_context("fork")
    for round_ in range(40):
        url, go = f"sqlite:///{tmp_path / f'{round_}.sqlite3'}", tmp_path / f"go{round_}"
        procs = [
            fork.Process(target=_connect_when, args=(url, str(go))) for _ in range(PROCESSES + 2)
        ]
        for proc in procs:
            proc.start()
        go.touch()
        for proc in procs:
            proc.join(60)
        assert [p.exitcode for p in procs] == [0] * len(procs), f"round {round_}"
        with get_engine(url).connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM seen")).scalar() == len(procs)
