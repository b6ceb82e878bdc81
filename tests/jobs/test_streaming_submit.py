"""Streaming submission (issue 23, item 3): a remove-dir job's chunks are queued as soon
as their items are committed, while the folder is still being walked.

Real parts: Redis, a real prefork Celery worker running a real (random-weight) model on
real JPEGs, the SQLite job database. To make "while" deterministic, the walk is held
after its first batch (a wrapper around the real planner) until the test has seen what
it waits for; were the chunks queued only after the walk, that wait would time out.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from test_bulk_recording import make_folder

from service_fixtures import wait_until
from unetbg import jobs
from unetbg.db.models import JobItem
from unetbg.jobs import recording
from unetbg.jobs.records import RECORDING
from unetbg.removal import streaming

pytestmark = pytest.mark.services


def _hold_after_first_batch(monkeypatch, then) -> list:
    """Make the planner call ``then()`` once its first batch was taken (recorded and
    queued), before it walks on; returns a list that gets ``then()``'s result."""
    plan, seen = streaming.plan_folder_in_batches, []

    def held(*args, **kwargs):
        batches = plan(*args, **kwargs)

        def walk():
            for n, batch in enumerate(batches):
                if n == 1:
                    seen.append(then())
                yield batch

        return walk()

    monkeypatch.setattr(streaming, "plan_folder_in_batches", held)
    return seen


def _newest_job() -> jobs.JobView:
    return jobs.list_jobs(limit=1)[0]


def _processed_item(folder: Path):
    """The first item under ``folder`` a worker finished, if any."""
    with jobs.db_session() as session:
        return session.scalars(
            select(JobItem).where(
                JobItem.source_path.startswith(str(folder.resolve())),
                JobItem.state == "succeeded",
            )
        ).first()


#: The worker's start and its model's first load count in this test's time: minutes on a
#: loaded machine.
@pytest.mark.timeout(1200)
def test_a_worker_processes_the_first_chunk_while_the_rest_is_recorded(
    broker_env, tmp_path, checkpoint, monkeypatch
):
    folder = make_folder(tmp_path / "in", images=12)
    monkeypatch.setattr(recording, "RECORD_BATCH", 4)

    def first_image_done():
        item = wait_until(lambda: _processed_item(folder), 900, "the first image processed")
        return jobs.get_job(item.job_id)

    seen = _hold_after_first_batch(monkeypatch, first_image_done)
    # torch: no backend's first export to wait for as well.
    job_id = jobs.create_remove_dir_job(
        folder, tmp_path / "out", str(checkpoint), chunk_size=2, backend="torch"
    )
    (during,) = seen
    # An image was done while the job was still being recorded (a third of it so far).
    assert during.id == job_id and RECORDING in during.params
    assert during.state == "running" and sum(during.items.values()) == 4
    # The chunks went out as recorded: starting the job sends none a second time.
    assert jobs.dispatch(job_id) == []
    job = jobs.wait_for_job(job_id, poll_s=0.3, timeout_s=600)
    assert job.state == "succeeded" and job.items == {"succeeded": 12}, broker_env.log_tail()
    assert job.progress_total == 12 and RECORDING not in job.params
    items = jobs.list_items(job_id)
    assert {item.attempts for item in items} == {1}  # each image claimed once
    assert len({item.chunk for item in items}) == 6  # chunks of 2, none split by a batch
    received = broker_env.log_tail(2000).count(f"[{job_id}-chunk")
    assert received >= 6 and all(
        broker_env.log_tail(2000).count(f"[{job_id}-chunk{c:04d}] received") == 1 for c in range(6)
    )


def test_a_cancel_during_recording_stops_the_walk(submitter, tmp_path, checkpoint, monkeypatch):
    folder = make_folder(tmp_path / "in", images=12)
    monkeypatch.setattr(recording, "RECORD_BATCH", 4)
    seen = _hold_after_first_batch(monkeypatch, lambda: jobs.cancel_job(_newest_job().id))
    job_id = jobs.create_remove_dir_job(folder, tmp_path / "out", str(checkpoint), chunk_size=2)
    (cancelled,) = seen
    assert cancelled.id == job_id
    job = jobs.get_job(job_id)
    # Nothing was recorded after the cancel, and the job ended (no worker ran anything).
    assert job.state == "cancelled" and RECORDING not in job.params
    assert job.items == {"cancelled": 4}
    assert jobs.dispatch(job_id) == []


def test_a_clash_across_batches_is_still_seen(submitter, tmp_path, checkpoint, monkeypatch):
    # a.jpg, a.png and A.webp all want a.png: each keeps its name, in batches of one.
    folder = tmp_path / "in"
    make_folder(folder / "sub", images=2)
    for name in ("a.jpg", "a.png", "A.webp"):
        (folder / name).write_bytes((folder / "sub" / "img000.jpg").read_bytes())
    monkeypatch.setattr(recording, "RECORD_BATCH", 1)
    job_id = jobs.create_remove_dir_job(folder, tmp_path / "out", str(checkpoint), chunk_size=1)
    outputs = {Path(i.source_path).name: Path(i.output_path).name for i in jobs.list_items(job_id)}
    assert outputs["a.jpg"] == "a.jpg.png" and outputs["a.png"] == "a.png.png"
    assert outputs["A.webp"] == "A.webp.png" and outputs["img000.jpg"] == "img000.png"
