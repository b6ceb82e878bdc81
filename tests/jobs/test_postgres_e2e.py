"""One whole job on the real PostgreSQL server: a remove-dir job recorded in PostgreSQL,
dispatched through real Redis to a real Celery worker whose records land there too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from service_fixtures import (
    Cluster,
    clear_unetbg_env,
    postgres_admin_engine,
    scratch_postgres_database,
)
from unetbg import jobs
from unetbg.db import schema

pytestmark = pytest.mark.services


@pytest.fixture
def postgres_cluster(redis_server, tmp_path: Path, monkeypatch) -> Iterator[Cluster]:
    """A fresh PostgreSQL database, migrated, with a worker and this process pointed at it."""
    admin = postgres_admin_engine()
    try:
        with scratch_postgres_database(admin, "unetbg_e2e") as url:
            schema.upgrade(url)
            cluster = Cluster(tmp_path, redis_server.url)
            cluster.database_url = cluster.env["UNETBG_DATABASE_URL"] = url
            clear_unetbg_env(monkeypatch)
            for key, value in cluster.env.items():
                monkeypatch.setenv(key, value)
            cluster.start_worker(queues="infer")
            try:
                yield cluster
            finally:
                cluster.stop_worker()
    finally:
        admin.dispose()


def test_remove_dir_job_recorded_in_postgres(postgres_cluster, photos, tmp_path, checkpoint):
    out = tmp_path / "out"
    job_id = jobs.create_remove_dir_job(photos, out, str(checkpoint))
    jobs.dispatch(job_id)
    try:
        job = jobs.wait_for_job(job_id, poll_s=0.3, timeout_s=180)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{postgres_cluster.log_tail()}") from None

    assert job.state == "succeeded", postgres_cluster.log_tail()
    assert job.items == {"succeeded": 5}
    items = jobs.list_items(job_id)
    assert len(items) == 5
    for item in items:
        assert item.state == "succeeded" and item.duration_s is not None
        with Image.open(item.source_path) as src, Image.open(item.output_path) as res:
            assert res.size == src.size and res.mode == "RGBA"
    # The rows really are in PostgreSQL, not in a SQLite file beside it.
    engine = create_engine(postgres_cluster.database_url)
    with engine.connect() as conn:
        states = conn.execute(
            text("SELECT state, count(*) FROM job_items WHERE job_id = :j GROUP BY state"),
            {"j": job_id},
        ).all()
        assert conn.dialect.name == "postgresql"
    engine.dispose()
    assert states == [("succeeded", 5)]
