"""The packaged migrations against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from unetbg.db import (
    Base,
    Checkpoint,
    EpochMetric,
    Job,
    JobItem,
    current,
    downgrade,
    get_engine,
    head_revision,
    session_scope,
    upgrade,
)
from unetbg.db.schema import MIGRATIONS_DIR

TABLES = {"jobs", "job_items", "checkpoints", "epoch_metrics"}


def _tables(url: str) -> set[str]:
    return set(inspect(get_engine(url)).get_table_names()) - {"alembic_version"}


def test_migrations_ship_with_the_package():
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert head_revision() == "0007"


def test_models_and_migrations_agree(db_url: str):
    upgrade(db_url)
    with get_engine(db_url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models.py and the migrations differ: {diff}"


def test_upgrade_downgrade_upgrade(db_url: str):
    assert current(db_url) is None
    upgrade(db_url)
    assert current(db_url) == head_revision()
    assert _tables(db_url) == TABLES
    with session_scope(db_url) as session:
        session.add(Job(id="before", kind="train"))

    downgrade(db_url, "base")
    assert current(db_url) is None
    assert _tables(db_url) == set()

    upgrade(db_url)
    assert current(db_url) == head_revision()
    assert _tables(db_url) == TABLES
    with session_scope(db_url) as session:
        assert session.scalars(select(Job)).all() == []


def test_json_columns_round_trip(db_url: str):
    upgrade(db_url)
    params = {
        "preset": "smoke",
        "lr": 3e-4,
        "sizes": [64, 128],
        "nested": {"ok": True, "none": None, "name": "Zoë 写真"},
    }
    metrics = {"iou": 0.8125, "per_class": [0.5, 0.25]}
    with session_scope(db_url) as session:
        job = Job(kind="train", params=params, result={"best": metrics})
        session.add(job)
        session.flush()
        session.add(Checkpoint(job_id=job.id, path="/c/best.pth", sha256="0" * 64, metrics=metrics))
        job_id = job.id
    with session_scope(db_url) as session:
        job = session.get(Job, job_id)
        assert job.params == params
        assert job.result == {"best": metrics}
        assert job.checkpoints[0].metrics == metrics
        assert job.state == "queued" and job.progress_done == 0 and job.cancel_requested is False


def test_epoch_metric_unique_per_job_epoch_split(db_url: str):
    upgrade(db_url)
    with session_scope(db_url) as session:
        session.add(Job(id="j1", kind="train"))
        session.add(EpochMetric(job_id="j1", epoch=1, split="train", loss=0.5))
        session.add(EpochMetric(job_id="j1", epoch=1, split="val", iou=0.4))
    with pytest.raises(IntegrityError), session_scope(db_url) as session:
        session.add(EpochMetric(job_id="j1", epoch=1, split="val", iou=0.6))
    with session_scope(db_url) as session:
        rows = session.scalars(select(EpochMetric).order_by(EpochMetric.split)).all()
        assert [(r.split, r.loss, r.iou) for r in rows] == [
            ("train", 0.5, None),
            ("val", None, 0.4),
        ]


def test_foreign_keys_are_enforced_and_cascade(db_url: str):
    upgrade(db_url)
    with pytest.raises(IntegrityError), session_scope(db_url) as session:
        session.add(JobItem(job_id="no-such-job", source_path="a.jpg"))
    with session_scope(db_url) as session:
        session.add(Job(id="j1", kind="remove_dir"))
        session.flush()
        session.add(JobItem(job_id="j1", source_path="a.jpg"))
        session.add(Checkpoint(job_id="j1", path="/c/last.pth", sha256="1" * 64))
    with get_engine(db_url).begin() as conn:
        # A plain SQL delete relies on the database's ON DELETE rules, not on the ORM.
        conn.execute(Job.__table__.delete())
    with session_scope(db_url) as session:
        assert session.scalars(select(JobItem)).all() == []
        assert session.scalars(select(Checkpoint.job_id)).all() == [None]


def test_0007_fills_the_item_counters_from_existing_items(db_url: str):
    """A database at 0006 with a job's items: after the upgrade its counters equal a
    recount (no-person included), and a job without items counts nothing."""
    from sqlalchemy import text

    from unetbg.jobs.records import counted, item_tally

    upgrade(db_url, "0006")
    states = ["pending"] * 3 + ["running"] * 2 + ["succeeded"] * 4 + ["failed", "skipped"]
    shares = {5: 0.0, 6: 0.0005, 7: 0.5, 8: None}  # two of the succeeded show no person
    with get_engine(db_url).begin() as conn:
        for job_id in ("counted", "empty"):
            conn.execute(
                text(
                    "INSERT INTO jobs (id, kind, state, params, progress_done, progress_total,"
                    " cancel_requested, attempts, send_round, created_at)"
                    " VALUES (:id, 'remove_dir', 'running', '{}', 0, 9, false, 0, 0,"
                    " CURRENT_TIMESTAMP)"
                ),
                {"id": job_id},
            )
        for n, state in enumerate(states):
            conn.execute(
                text(
                    "INSERT INTO job_items (job_id, source_path, state, attempts, person_share,"
                    " updated_at) VALUES ('counted', :source, :state, 0, :share,"
                    " CURRENT_TIMESTAMP)"
                ),
                {"source": f"/in/{n}.jpg", "state": state, "share": shares.get(n)},
            )
    upgrade(db_url)
    with session_scope(db_url) as session:
        counts, no_person, outputs_skipped = counted(session, "counted")
        assert (counts, no_person) == item_tally(session, "counted")
        assert counts == {"pending": 3, "running": 2, "succeeded": 4, "failed": 1, "skipped": 1}
        assert no_person == 2 and outputs_skipped == 0
        assert counted(session, "empty") == ({}, 0, 0)
