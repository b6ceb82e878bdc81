"""The job service without a broker: the same task functions run in this process."""

from __future__ import annotations

import os
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from unetbg import jobs
from unetbg.cli._render import describe
from unetbg.db.models import Job, JobItem, utcnow
from unetbg.durable import file_sha256
from unetbg.jobs.records import recount
from unetbg.jobs.watched import close_watch


def _remove_dir(photos: Path, out: Path, checkpoint: Path, **kw) -> jobs.JobView:
    job_id = jobs.create_remove_dir_job(photos, out, str(checkpoint), chunk_size=2, **kw)
    assert jobs.get_job(job_id).state == "queued"
    assert jobs.dispatch(job_id) == []  # embedded: ran here, nothing enqueued
    return jobs.get_job(job_id)


def test_remove_dir_runs_in_process(embedded_env, photos, tmp_path, checkpoint):
    out = tmp_path / "out"
    job = _remove_dir(photos, out, checkpoint, backend="torch")
    assert job.state == "succeeded", job
    assert job.items == {"succeeded": 5}
    assert (job.progress_done, job.progress_total) == (5, 5)
    assert (embedded_env / "unetbg.sqlite3").is_file()
    assert job.params["backends"] == ["torch"]  # asked for by name below: what ran
    assert "backend    torch" in describe(job)

    items = jobs.list_items(job.id)
    assert sorted(i.chunk for i in items) == [0, 0, 1, 1, 2]
    for item in items:
        source, output = Path(item.source_path), Path(item.output_path)
        assert output == out / source.relative_to(photos).with_suffix(".png")
        with Image.open(source) as src, Image.open(output) as res:
            assert res.size == src.size and res.mode == "RGBA"
        assert item.error is None and item.duration_s > 0
    # Inputs are never modified; no temporary files are left next to the outputs.
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        p.with_suffix(".png").name for p in photos.rglob("*.jpg")
    )


def test_rerun_processes_only_missing_or_failed(embedded_env, photos, tmp_path, checkpoint):
    out = tmp_path / "out"
    broken = photos / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    first = _remove_dir(photos, out, checkpoint)
    assert first.state == "partial"
    assert first.items == {"succeeded": 5, "failed": 1}
    (failed,) = jobs.list_items(first.id, states=["failed"])
    assert failed.source_path == str(broken) and failed.error
    assert "broken.jpg" not in {p.name for p in out.rglob("*")}
    assert "1 of 6 images failed" in first.error

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    Image.new("RGB", (40, 30), (200, 10, 10)).save(broken, "JPEG")  # repaired
    second = _remove_dir(photos, out, checkpoint)
    assert second.state == "succeeded"
    assert second.items == {"skipped": 5, "succeeded": 1}
    assert second.progress_total == 1
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # untouched
    with Image.open(out / "broken.png") as res:
        assert res.size == (40, 30)

    third = jobs.get_job(jobs.create_remove_dir_job(photos, out, str(checkpoint)))
    assert third.state == "succeeded" and third.items == {"skipped": 6}


def test_all_failed_is_failed(embedded_env, tmp_path, checkpoint):
    photos = tmp_path / "bad"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"")
    (photos / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    job = _remove_dir(photos, tmp_path / "out", checkpoint)
    assert job.state == "failed" and job.items == {"failed": 2}
    assert job.error == "all 2 images failed"


def test_redelivered_chunk_redoes_nothing(embedded_env, photos, tmp_path, checkpoint):
    from unetbg.tasks.remove import remove_chunk

    job = _remove_dir(photos, tmp_path / "out", checkpoint)
    items = jobs.list_items(job.id)
    stamps = {i.output_path: os.stat(i.output_path).st_mtime_ns for i in items}
    result = remove_chunk.apply(args=[job.id, [i.id for i in items if i.chunk == 0]]).get()
    assert result == {"job": job.id, "processed": 0}
    assert {i.output_path: os.stat(i.output_path).st_mtime_ns for i in items} == stamps
    assert jobs.get_job(job.id).state == "succeeded"


def test_bad_requests_are_clear(embedded_env, photos, tmp_path, checkpoint, monkeypatch):
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", "none")  # no shipped model to fall back on
    with pytest.raises(jobs.NoCheckpointError, match="submit-train .*--checkpoint PATH"):
        jobs.create_remove_dir_job(photos, tmp_path / "out", "best")
    with pytest.raises(jobs.NoCheckpointError, match="not found"):
        jobs.create_remove_dir_job(photos, tmp_path / "out", str(tmp_path / "nope.pth"))
    with pytest.raises(jobs.JobError, match="inside the input folder"):
        jobs.create_remove_dir_job(photos, photos / "out", str(checkpoint))
    with pytest.raises(jobs.JobError, match="batch_size must be >= 1"):
        jobs.create_remove_dir_job(photos, tmp_path / "o", str(checkpoint), batch_size=0)
    with pytest.raises(jobs.JobError, match="unknown backend 'tpu'"):
        jobs.create_remove_dir_job(photos, tmp_path / "o", str(checkpoint), backend="tpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(jobs.JobError, match="no images found"):
        jobs.create_remove_dir_job(empty, tmp_path / "o", str(checkpoint))
    with pytest.raises(jobs.JobError, match="unknown preset 'huge'"):
        jobs.create_train_job("huge")
    with pytest.raises(jobs.JobError, match="COCO root"):
        jobs.create_train_job("smoke")
    with pytest.raises(jobs.JobNotFound):
        jobs.get_job("doesnotexist")
    assert jobs.list_jobs() == []  # nothing half-recorded


def test_best_checkpoint_is_highest_val_iou(embedded_env, tmp_path, checkpoint, monkeypatch):
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", "none")  # `best` among the registered only
    weak, strong = tmp_path / "weak.pth", tmp_path / "strong.pth"
    weak.write_bytes(checkpoint.read_bytes())
    strong.write_bytes(checkpoint.read_bytes())
    with jobs.db_session() as session:
        jobs.register_checkpoint(session, None, weak, 3, {"iou": 0.41}, is_best=True)
        jobs.register_checkpoint(session, None, strong, 5, {"iou": 0.62}, is_best=True)
        jobs.register_checkpoint(session, None, tmp_path / "weak.pth", 6, {"iou": 0.9}, False)
    assert jobs.resolve_checkpoint("best") == str(strong.resolve())
    rows = jobs.list_checkpoints()
    by_path = {r.path: r for r in rows}
    assert len(rows) == 2  # the same path is refreshed, not added twice
    assert by_path[str(weak.resolve())].is_best is False
    assert jobs.resolve_checkpoint(str(by_path[str(weak.resolve())].id)) == str(weak.resolve())
    assert by_path[str(strong.resolve())].sha256 == file_sha256(checkpoint)


def test_cancel_before_start(embedded_env, photos, tmp_path, checkpoint):
    job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint), chunk_size=2)
    view = jobs.cancel_job(job_id[:6])  # a unique prefix is enough
    assert view.state == "cancelled" and view.items == {"cancelled": 5}
    assert jobs.dispatch(job_id) == []
    assert not (tmp_path / "out").exists()
    assert jobs.cancel_job(job_id).state == "cancelled"  # idempotent


def test_stale_heartbeats_mark_jobs_lost(embedded_env, photos, tmp_path, checkpoint):
    job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint), chunk_size=2)
    long_ago = utcnow() - timedelta(hours=1)
    with jobs.db_session() as session:
        # A worker claimed chunk 0 an hour ago and vanished.
        job = session.get(Job, job_id)
        job.state, job.heartbeat_at, job.worker_host = "running", long_ago, "gone-host:1"
        for item in session.query(JobItem).filter_by(job_id=job_id, chunk=0):
            item.state, item.updated_at = "running", long_ago
        session.flush()
        recount(session, job_id)  # rows written by hand: their counters follow
        train = Job(kind="train", state="running", heartbeat_at=long_ago, worker_host="gone:2")
        fresh = Job(kind="train", state="running", heartbeat_at=utcnow(), worker_host="x:3")
        session.add_all([train, fresh])
    assert sorted(jobs.mark_lost_jobs()) == sorted([job_id, train.id])
    assert jobs.get_job(fresh.id).state == "running"
    lost_train = jobs.get_job(train.id)
    assert lost_train.state == "failed" and lost_train.error.startswith(jobs.LOST_PREFIX)
    view = jobs.get_job(job_id)
    assert view.state == "running" and view.items == {"failed": 2, "pending": 3}
    # The remaining chunks still run; the job then ends partial, listing the lost ones.
    jobs.dispatch(job_id)
    view = jobs.get_job(job_id)
    assert view.state == "partial" and view.items == {"failed": 2, "succeeded": 3}
    assert all(i.error.startswith("lost: ") for i in jobs.list_items(job_id, ["failed"]))


def test_unreadable_checkpoint_fails_the_job_with_its_reason(
    embedded_env, photos, tmp_path, checkpoint
):
    # A zip archive, so it passes the pre-submit check, that torch cannot load: the
    # file's fault shows only when a worker loads it, and fails each item with the reason.
    bad = tmp_path / "bad.pth"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("bad/data.pkl", b"not a pickle")
    job = _remove_dir(photos, tmp_path / "out", bad)
    assert job.state == "failed" and job.items == {"failed": 5}
    errors = {i.error for i in jobs.list_items(job.id)}
    assert len(errors) == 1 and errors.pop().startswith("CheckpointError: ")
    assert not (tmp_path / "out").exists()


def test_a_broker_lost_after_recording_fails_the_recorded_job(
    embedded_env, photos, tmp_path, checkpoint, monkeypatch
):
    # An unreachable broker is refused before recording (test_refused_before_recording);
    # one that goes away between recording and sending fails the job, saying why.
    from service_fixtures import free_port

    job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint))
    monkeypatch.setenv("UNETBG_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(jobs.JobError, match="could not be queued"):
        jobs.dispatch(job_id)
    job = jobs.get_job(job_id)
    assert job.state == "failed" and job.items == {"failed": 5}
    assert "could not enqueue" in job.error


def test_a_watch_ended_by_cancel_is_cancelled_not_succeeded(embedded_env, tmp_path, checkpoint):
    # Issue 20, item 13: the cancel stopped a job that would have gone on watching, even
    # when no image was waiting at that moment; Ctrl-C (closing the watch) is a success.
    (tmp_path / "inbox").mkdir()
    watched = jobs.create_remove_dir_job(
        tmp_path / "inbox", tmp_path / "out", str(checkpoint), watch=True
    )
    assert jobs.cancel_job(watched).state == "cancelled"
    assert jobs.get_job(watched).state == "cancelled"
    closed = jobs.create_remove_dir_job(
        tmp_path / "inbox", tmp_path / "out2", str(checkpoint), watch=True
    )
    close_watch(closed)
    assert jobs.get_job(closed).state == "succeeded"


def test_a_stopped_run_reads_right_and_resumes_with_a_fresh_clock(embedded_env):
    # Issue 20, item 13: a cancelled run said "best checkpoint: None"; once resumed,
    # `status` showed the stopped run's step and a run time counting the stopped hours.
    from dataclasses import replace

    from unetbg.cli._render import result_lines

    long_ago = utcnow() - timedelta(hours=2)
    with jobs.db_session() as session:
        job = Job(kind="train", state="cancelled", params={"run_dir": "/runs/x"})
        job.started_at, job.finished_at = long_ago, long_ago + timedelta(minutes=5)
        job.step_progress = {"epoch": 1, "epochs": 3, "step": 7, "steps": 9}
        job.result = {
            "status": "cancelled",
            "epochs_completed": 0,
            "best_checkpoint": None,
            "last_checkpoint": "/runs/x/last_model.pth",
        }
        session.add(job)
        session.flush()
        job_id = job.id
    stopped = jobs.get_job(job_id)
    lines = result_lines(stopped)
    assert "None" not in "\n".join(lines)
    assert lines[1] == "best checkpoint: none yet (no epoch was validated)"
    assert lines[2].endswith(f"(continue: unetbg submit-train --resume {job_id})")

    jobs.retry_job(job_id)  # reopened, as submit-train --resume does
    reopened = jobs.get_job(job_id)
    assert reopened.state == "queued" and reopened.step_progress is None
    assert reopened.started_at is None and reopened.seconds is None
    assert result_lines(replace(reopened, result=None)) == []


def test_work_sent_again_gets_task_ids_a_cancel_never_revoked(embedded_env, coco_mini):
    # Issue 20, item 1, training: a run cancelled while queued has its task id revoked in
    # every worker; retrying (or resuming) it must send it under another id.
    job_id = jobs.create_train_job("smoke", {"coco_root": str(coco_mini), "epochs": 1})
    with jobs.db_session() as session:
        first = jobs.task_ids(session.get(Job, job_id))
    assert first == [f"{job_id}-train"]
    jobs.cancel_job(job_id)  # queued: cancelled at once, and its id revoked
    assert jobs.get_job(job_id).state == "cancelled"
    jobs.retry_job(job_id)
    with jobs.db_session() as session:
        again = jobs.task_ids(session.get(Job, job_id))
    assert again == [f"{job_id}-train-r1"]
    jobs.cancel_job(job_id)
    jobs.retry_job(job_id)
    with jobs.db_session() as session:
        assert jobs.task_ids(session.get(Job, job_id)) == [f"{job_id}-train-r2"]


def test_a_foreground_run_cancelled_before_validating_names_no_checkpoint(tmp_path, capsys):
    # Issue 20, item 13: `unetbg train` stopped by Ctrl-C before its first validation
    # printed "best checkpoint: None".
    from types import SimpleNamespace

    from unetbg.cli.train import _report
    from unetbg.training.config import resolve_config

    result = SimpleNamespace(
        status="cancelled",
        epochs_completed=0,
        seconds=3.0,
        best_epoch=None,
        best_metrics=None,
        best_checkpoint=None,
        evaluation=None,
    )
    with pytest.raises(SystemExit) as stopped:
        _report(result, resolve_config("smoke"), tmp_path, "abc123")
    assert stopped.value.code == 1
    out = capsys.readouterr().out
    assert "best checkpoint: none yet (no epoch was validated)" in out and "None" not in out
