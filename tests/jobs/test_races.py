"""Races between attempts at the same work, dead runners and cancels, without a broker.

A "live" claimant on this host is a real process of ours (``sleep``); a dead one is the
pid of a process that has ended. Everything else is the real SQLite job database, real
COCO photos and a real checkpoint (see conftest.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from service_fixtures import SMOKE_TRAINING, wait_until
from unetbg import jobs
from unetbg.cli import main
from unetbg.db.models import Job, JobItem, utcnow
from unetbg.jobs.records import recount
from unetbg.tasks.base import Deferred

LONG_AGO = timedelta(hours=1)


@pytest.fixture
def live_claimant() -> Iterator[str]:
    """``host:pid`` of a process of ours that is running."""
    proc = subprocess.Popen(["sleep", "120"])
    yield f"{socket.gethostname()}:{proc.pid}"
    proc.kill()
    proc.wait()


def dead_claimant() -> str:
    """``host:pid`` of a process that has ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}"


def _hold_chunk(job_id: str, chunk: int, claimant: str, updated_at) -> list[int]:
    """Record chunk ``chunk``'s images as claimed by ``claimant`` (a chunk mid-run)."""
    with jobs.db_session() as session:
        job = session.get(Job, job_id)
        job.state, job.worker_host, job.heartbeat_at = "running", claimant, updated_at
        ids = []
        for item in session.query(JobItem).filter_by(job_id=job_id, chunk=chunk):
            item.state, item.claimed_by, item.updated_at = "running", claimant, updated_at
            ids.append(item.id)
        session.flush()
        recount(session, job_id)  # rows written by hand: their counters follow
    return sorted(ids)


def _items(job_id: str, ids: list[int]) -> list[tuple[str, str | None]]:
    with jobs.db_session() as session:
        rows = session.query(JobItem).filter(JobItem.id.in_(ids)).order_by(JobItem.id)
        return [(i.state, i.claimed_by) for i in rows]


def _temporary_beside(output: str) -> Path:
    """A temporary as ``write_atomic`` leaves it beside ``output`` mid-write."""
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.0123456789ab.tmp"
    temporary.write_bytes(b"half an image")
    return temporary


# ------------------------------------------------------------------------ P1-1: claims


def test_redelivered_chunk_leaves_a_live_claimants_images(
    embedded_env, photos, tmp_path, checkpoint, live_claimant
):
    from unetbg.tasks.remove import remove_chunk

    job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint), chunk_size=2)
    # Silent for an hour, but its process runs: on this host the pid decides.
    ids = _hold_chunk(job_id, 0, live_claimant, utcnow() - LONG_AGO)
    outputs = [i.output_path for i in jobs.list_items(job_id) if i.id in ids]
    temporary = _temporary_beside(outputs[0])

    result = remove_chunk.apply(args=[job_id, ids])
    assert result.failed() and isinstance(result.result, Deferred)
    assert _items(job_id, ids) == [("running", live_claimant)] * 2
    assert temporary.exists()  # its in-flight write is left alone
    assert not any(Path(o).exists() for o in outputs)
    assert jobs.mark_lost_jobs() == []  # a live worker's images are not lost either
    assert jobs.get_job(job_id).error is None


def test_dead_claimants_images_are_taken_over(embedded_env, photos, tmp_path, checkpoint):
    from unetbg.tasks.remove import remove_chunk

    job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint), chunk_size=2)
    # Reported a moment ago, but its process is gone: taken over at once.
    ids = _hold_chunk(job_id, 0, dead_claimant(), utcnow())
    outputs = [i.output_path for i in jobs.list_items(job_id) if i.id in ids]
    temporary = _temporary_beside(outputs[0])

    assert remove_chunk.apply(args=[job_id, ids]).get()["succeeded"] == 2
    me = jobs.worker_identity()
    assert _items(job_id, ids) == [("succeeded", me)] * 2
    assert not temporary.exists() and all(Path(o).is_file() for o in outputs)


def test_other_hosts_claim_stands_while_it_reports(embedded_env, photos, tmp_path, checkpoint):
    from unetbg.tasks.remove import remove_chunk

    job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint), chunk_size=2)
    ids = _hold_chunk(job_id, 0, "other-host:4242", utcnow())
    assert isinstance(remove_chunk.apply(args=[job_id, ids]).result, Deferred)
    assert _items(job_id, ids) == [("running", "other-host:4242")] * 2

    _hold_chunk(job_id, 0, "other-host:4242", utcnow() - LONG_AGO)  # then it went silent
    assert remove_chunk.apply(args=[job_id, ids]).get()["succeeded"] == 2
    assert _items(job_id, ids) == [("succeeded", jobs.worker_identity())] * 2


def test_outcome_is_written_only_by_the_current_claimant(
    embedded_env, photos, tmp_path, checkpoint
):
    from unetbg.tasks.remove import remove_chunk

    job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint), chunk_size=2)
    ids = sorted(i.id for i in jobs.list_items(job_id) if i.chunk == 0)
    claim = remove_chunk.claim_items(job_id, ids)
    assert [row[0] for row in claim.rows] == ids and not claim.holders
    with jobs.db_session() as session:  # another attempt took the first image over
        session.get(JobItem, ids[0]).claimed_by = "other-host:1"

    assert remove_chunk.record_item(job_id, ids[0], "failed", "late", 1.0) == (False, False)
    assert remove_chunk.record_item(job_id, ids[1], "succeeded", None, 1.0) == (True, False)
    assert _items(job_id, ids) == [
        ("running", "other-host:1"),
        ("succeeded", jobs.worker_identity()),
    ]


# --------------------------------------------------------------- P1-2: lost, takeover


def test_lost_check_spares_jobs_whose_worker_is_alive(embedded_env):
    stale = utcnow() - LONG_AGO
    dead = dead_claimant()
    with jobs.db_session() as session:
        # This very process runs it (embedded `--wait`): it must never mark itself lost.
        mine = Job(kind="train", state="running", heartbeat_at=stale)
        mine.worker_host = jobs.worker_identity()
        gone = Job(kind="evaluate", state="running", heartbeat_at=stale, worker_host=dead)
        session.add_all([mine, gone])
    assert jobs.mark_lost_jobs() == [gone.id]
    assert jobs.get_job(mine.id).state == "running"
    assert jobs.get_job(gone.id).error.startswith(jobs.LOST_PREFIX)


def test_a_lost_job_whose_worker_reports_again_is_not_taken_over(embedded_env):
    from unetbg.tasks.train import train_job

    with jobs.db_session() as session:
        job = Job(
            kind="train",
            state="failed",
            error=f"{jobs.LOST_PREFIX}worker other-host:7 stopped reporting",
            heartbeat_at=utcnow(),  # it beats again (a database outage is over)
            worker_host="other-host:7",
            attempts=1,
            params={"config": {}, "run_dir": "/nowhere"},
        )
        session.add(job)
    result = train_job.apply(args=[job.id])
    assert isinstance(result.result, Deferred)
    view = jobs.get_job(job.id)
    assert (view.state, view.attempts, view.worker_host) == ("failed", 1, "other-host:7")


def _train_in_thread(coco_mini: Path, epochs: int) -> tuple[str, threading.Thread]:
    job_id = jobs.create_train_job(
        "smoke", SMOKE_TRAINING | {"coco_root": str(coco_mini), "epochs": epochs}
    )
    runner = threading.Thread(target=jobs.dispatch, args=(job_id,), daemon=True)
    runner.start()
    wait_until(lambda: jobs.list_epoch_metrics(job_id), 180, "the first epoch's metrics")
    return job_id, runner


def test_taken_over_training_stops_and_writes_nothing_more(embedded_env, coco_mini):
    job_id, runner = _train_in_thread(coco_mini, epochs=40)
    with jobs.db_session() as session:  # another worker took the run over
        session.get(Job, job_id).worker_host = "other-host:99"
    runner.join(120)
    assert not runner.is_alive()
    view = jobs.get_job(job_id)
    assert (view.state, view.worker_host, view.result) == ("running", "other-host:99", None)
    assert view.progress_done < 40


def test_owner_overwrites_a_lost_mark(embedded_env, coco_mini):
    job_id, runner = _train_in_thread(coco_mini, epochs=4)
    with jobs.db_session() as session:  # as a watcher elsewhere would, wrongly
        job = session.get(Job, job_id)
        jobs.end_job(job, "failed", f"{jobs.LOST_PREFIX}worker stopped reporting")
    runner.join(180)
    view = jobs.get_job(job_id)
    assert (view.state, view.error) == ("succeeded", None)
    assert view.result["epochs_completed"] == 4


# ------------------------------------------------------------- P1-5: evaluation cancel


def test_evaluation_stops_between_batches(coco_mini, checkpoint):
    from unetbg.training.evaluation import EvaluationStopped, evaluate_checkpoint

    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 1

    with pytest.raises(EvaluationStopped, match="after 8 of 20 images"):
        evaluate_checkpoint(
            checkpoint, coco_mini, device="cpu", limit=20, batch_size=2, should_stop=should_stop
        )


def test_cancel_ends_a_running_evaluation_job(embedded_env, coco_mini, checkpoint):
    job_id = jobs.create_evaluate_job(str(checkpoint), coco_mini, device="cpu")
    runner = threading.Thread(target=jobs.dispatch, args=(job_id,), daemon=True)
    runner.start()
    wait_until(lambda: jobs.get_job(job_id).state == "running", 60, "the evaluation to start")
    assert jobs.cancel_job(job_id).cancel_requested
    runner.join(120)
    view = jobs.get_job(job_id)
    assert view.state == "cancelled" and view.result is None


# ------------------------------------------------------------------------- CLI findings


def test_wait_ends_when_the_runner_dies(embedded_env, photos, tmp_path, checkpoint, capsys):
    from unetbg.cli._follow import wait_and_report

    job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint))
    runner = threading.Thread(target=lambda: None)  # ended without running the job
    runner.error = "OperationalError: database is locked"
    runner.start()
    runner.join()
    codes = []
    watcher = threading.Thread(
        target=lambda: codes.append(wait_and_report(job_id, runner, True)), daemon=True
    )
    watcher.start()
    watcher.join(60)
    assert codes == [1], "wait_and_report kept waiting on a dead runner"
    view = jobs.get_job(job_id)
    assert view.state == "failed" and "database is locked" in view.error
    assert view.items == {"failed": 5}
    assert json.loads(capsys.readouterr().out)["state"] == "failed"


def test_unusable_device_is_refused_or_fails_the_job_once(
    embedded_env, photos, tmp_path, checkpoint
):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without a CUDA GPU")
    args = ["remove-dir", str(photos), str(tmp_path / "o"), "--checkpoint", str(checkpoint)]
    refused = CliRunner().invoke(main, [*args, "--device", "cuda"])
    assert refused.exit_code == 2 and "no CUDA GPU" in refused.output
    assert CliRunner().invoke(main, [*args, "--device", "tpu"]).exit_code == 2
    assert jobs.list_jobs() == []  # nothing recorded

    # A worker without the GPU the job asks for: the job fails once, saying why.
    job_id = jobs.create_remove_dir_job(
        photos, tmp_path / "out", str(checkpoint), chunk_size=2, device="cuda"
    )
    jobs.dispatch(job_id)
    view = jobs.get_job(job_id)
    assert view.state == "failed" and view.items == {"failed": 5}
    assert view.error.startswith("device 'cuda' is not usable on worker ")
    assert not (tmp_path / "out").exists()


def test_plain_progress_and_cancelling_a_finished_job(embedded_env, photos, tmp_path, checkpoint):
    args = ["remove-dir", str(photos), str(tmp_path / "out"), "--checkpoint", str(checkpoint)]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    job_id = done.stdout.splitlines()[0]
    # stderr is no terminal here: plain lines, no bar redrawn with carriage returns.
    assert "\r" not in done.stderr
    lines = done.stderr.splitlines()
    assert any(line.startswith(f"{job_id}: succeeded 5/5 img") for line in lines), lines

    with jobs.db_session() as session:
        session.get(Job, job_id).state = "partial"
    cancel = CliRunner().invoke(main, ["cancel", job_id])
    assert cancel.exit_code == 0
    assert cancel.stdout.strip() == f"job {job_id} already finished (partial); nothing to cancel"

    for command in ("jobs", "checkpoints"):
        help_text = CliRunner().invoke(main, [command, "--help"]).output
        assert "0 listed" in help_text and "the job failed" not in help_text


def test_the_owner_s_end_replaces_a_lost_mark_and_nobody_else_s_does(embedded_env):
    # jobs.claims.end_owned_job, what a whole-job task's end calls (no training needed to
    # see the rule that test_owner_overwrites_a_lost_mark checks on a real run).
    from unetbg.jobs import claims

    def job_marked_lost(owner: str) -> str:
        with jobs.db_session() as session:
            job = Job(kind="evaluate", state="running", params={}, worker_host=owner)
            session.add(job)
            session.flush()
            jobs.end_job(job, "failed", f"{jobs.LOST_PREFIX}worker stopped reporting")
            return job.id

    mine = job_marked_lost(jobs.worker_identity())
    assert claims.end_owned_job(mine, "succeeded", {"iou": 0.5}, 1)
    view = jobs.get_job(mine)
    assert (view.state, view.error, view.result, view.progress_done) == (
        "succeeded",
        None,
        {"iou": 0.5},
        1,
    )
    theirs = job_marked_lost("other-host:99")
    assert not claims.end_owned_job(theirs, "succeeded", {"iou": 0.5}, 1)
    assert jobs.get_job(theirs).state == "failed"
