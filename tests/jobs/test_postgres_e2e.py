"""One whole job on the real PostgreSQL server: a remove-dir job recorded in PostgreSQL,
dispatched through real Redis to a real Celery worker whose records land there too."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from service_fixtures import Cluster, clear_unetbg_env
from unetbg import jobs
from unetbg.settings import mask_url

pytestmark = pytest.mark.services

POSTGRES_ADMIN_URL = os.environ.get(
    "UNETBG_TEST_POSTGRES_URL", "postgresql+psycopg://unetbg:unetbg@127.0.0.1:5432/postgres"
)


@pytest.fixture
def postgres_cluster(redis_server, tmp_path: Path, monkeypatch) -> Iterator[Cluster]:
    """A fresh PostgreSQL database, migrated, with a worker and this process pointed at it."""
    admin = create_engine(
        POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        admin.connect().close()
    except OperationalError as exc:
        reason = f"PostgreSQL at {mask_url(POSTGRES_ADMIN_URL)} is unreachable: {exc.orig}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"unetbg_e2e_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    from unetbg.db import get_engine, schema

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
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
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
