"""The item queries of a job with a million images: their plans and times, per database.

    python benchmarks/explain_items.py [--items 1000000] [--postgres URL | --no-postgres]

For SQLite (a file in a temporary folder) and PostgreSQL (a scratch database on the
server at URL, default the test server, dropped afterwards) it records one remove-dir
job of ``--items`` items (90 % succeeded, 1 in 20 of those with no person, 5 % failed,
5 % pending), sets the job's counters, runs ``ANALYZE``, and for each query the service
sends prints the plan (``EXPLAIN QUERY PLAN`` / ``EXPLAIN``) and the median of 5 runs:

- the job's status (``jobs.get_job``: the counters, no count of items);
- a page of 100 items, first and from the middle (``item_page``), all and ``failed`` only,
  and the no-person filter's first page;
- a chunk's claim: its 16 ids among the open items (``jobs.claims``).

Rows are written with plain multi-row inserts: this measures reading, not recording
(``bench_scale.py`` measures submission).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from unetbg.db import Job, JobItem, schema  # noqa: E402
from unetbg.jobs import records  # noqa: E402
from unetbg.jobs.queries import ItemPageRequest, _page_query  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://unetbg:unetbg@127.0.0.1:5432/postgres"
JOB = "explain00001"
BATCH = 20_000


def fill(url: str, count: int) -> None:
    """One remove-dir job of ``count`` items, its counters set, statistics gathered."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Job).values(id=JOB, kind="remove_dir", progress_total=count))
        for start in range(0, count, BATCH):
            rows = [_row(n) for n in range(start, min(count, start + BATCH))]
            conn.execute(insert(JobItem), rows)
    from sqlalchemy.orm import Session

    with Session(engine) as session, session.begin():
        records.recount(session, JOB)
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    engine.dispose()


def _row(n: int) -> dict:
    state = "failed" if n % 20 == 7 else "pending" if n % 20 == 13 else "succeeded"
    return {
        "job_id": JOB,
        "source_path": f"/in/{n // 1000:04d}/{n:07d}.jpg",
        "output_path": f"/out/{n // 1000:04d}/{n:07d}.png",
        "state": state,
        "error": "cannot identify image file" if state == "failed" else None,
        "person_share": (0.0 if n % 400 == 3 else 0.3) if state == "succeeded" else None,
    }


def queries(count: int) -> dict[str, Callable]:
    """Name -> the statement the service sends, built by the service's own code."""
    middle = count // 2
    claim_ids = list(range(middle + 1, middle + 17))
    return {
        "page 1, all": _page_query(JOB, ItemPageRequest(JOB, "all", 100)),
        "page from the middle, all": _page_query(JOB, ItemPageRequest(JOB, "all", 100, middle)),
        "page from the middle, failed": _page_query(
            JOB, ItemPageRequest(JOB, "failed", 100, middle)
        ),
        "page 1, no-person": _page_query(JOB, ItemPageRequest(JOB, "no-person", 100)),
        "claim a chunk of 16": select(JobItem)
        .where(
            JobItem.job_id == JOB,
            JobItem.id.in_(claim_ids),
            JobItem.state.in_(("pending", "running")),
        )
        .order_by(JobItem.id),
    }


def measure(url: str, count: int) -> None:
    from unetbg.jobs import get_job
    from unetbg.settings import get_settings

    engine = create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    settings = get_settings({"UNETBG_DATABASE_URL": url, "UNETBG_DATA_DIR": tempfile.gettempdir()})
    print(f"\n## {engine.dialect.name}: {count:,} items")
    print("\n| query | median of 5 | plan |\n| --- | ---: | --- |")
    seconds = _median(lambda: get_job(JOB, settings))
    print(f"| job status (`get_job`) | {seconds * 1000:.1f} ms | counters on the job row |")
    with engine.connect() as conn:
        for name, statement in queries(count).items():
            compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
            explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            plan = conn.execute(text(explain + str(compiled))).fetchall()
            steps = [row[-1] for row in plan] if sqlite else [row[0].strip() for row in plan]
            seconds = _median(lambda s=statement: conn.execute(s).fetchall())
            print(f"| {name} | {seconds * 1000:.1f} ms | {'; '.join(steps[:3])} |")
    engine.dispose()


def _median(call: Callable) -> float:
    times = []
    for _ in range(5):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/explain.sqlite3"
        schema.upgrade(url)
        started = time.perf_counter()
        fill(url, args.items)
        print(f"sqlite: {args.items:,} rows written in {time.perf_counter() - started:.0f} s")
        measure(url, args.items)
    if not args.no_postgres:
        _postgres(args.postgres, args.items)


def _postgres(admin_url: str, count: int) -> None:
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = "unetbg_explain"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        schema.upgrade(url)
        started = time.perf_counter()
        fill(url, count)
        print(f"\npostgresql: {count:,} rows written in {time.perf_counter() - started:.0f} s")
        measure(url, count)
    finally:
        from unetbg.db.session import get_engine

        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
