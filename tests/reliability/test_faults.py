"""Fault injection on real processes: killed pool processes and workers, a Redis
restart, two workers and several processes on one SQLite file, cancels mid-run.

Each test starts its own workers on ``fault_cluster`` (a persistent Redis, as in
docker-compose.yml) and the fixture stops them afterwards. The training cases that
``tests/jobs/test_celery.py`` already covers (a pool process killed mid-training
resumes from ``last_model.pth``; a cancel keeps the last checkpoint) are not repeated.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import select

from inference_fixtures import write_photo
from service_fixtures import VENV_BIN, wait_until
from unetbg import jobs
from unetbg.cli import main
from unetbg.db.models import Job, JobItem
from unetbg.durable import file_sha256
from unetbg.jobs.records import recount

pytestmark = [pytest.mark.services, pytest.mark.fault]

SMOKE = {
    "epochs": 30,
    "max_steps_per_epoch": 2,
    "image_size": 64,
    "batch_size": 2,
    "val_limit": 2,
    "device": "cpu",
    "num_workers": 0,
}


#: Big enough that a chunk of a few images lasts well beyond the test's reaction time.
SLOW = (480, 360)


def _photos(folder: Path, count: int, size: tuple[int, int] = SLOW) -> list[Path]:
    return [write_photo(folder / f"img{i:03d}.jpg", *size, quality=90) for i in range(count)]


def _succeeded(job_id: str) -> int:
    return jobs.get_job(job_id).items.get("succeeded", 0)


def _remove_dir_under_way(tmp_path: Path, checkpoint: Path, count: int, chunk_size: int):
    """Submit a remove-dir of ``count`` slow photos, one image a batch; return once the
    first image is done: (input folder, output folder, job id)."""
    inp, out = tmp_path / "in", tmp_path / "out"
    _photos(inp, count)
    job_id = jobs.create_remove_dir_job(
        inp, out, str(checkpoint), chunk_size=chunk_size, batch_size=1
    )
    jobs.dispatch(job_id)
    wait_until(lambda: _succeeded(job_id) >= 1, 120, "the first chunk to be under way", 0.05)
    return inp, out, job_id


def _finished(log: str, task: str) -> int:
    """How many ``task`` lines in a worker log say a task succeeded."""
    return sum(1 for line in log.splitlines() if task in line and "] succeeded in " in line)


def _wait(cluster, job_id: str, timeout: float = 180) -> jobs.JobView:
    try:
        return jobs.wait_for_job(job_id, poll_s=0.2, timeout_s=timeout)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{cluster.log_tail()}") from None


def _files(out: Path) -> list[Path]:
    """Every file under ``out``, hidden temporaries included."""
    return sorted(p for p in out.rglob("*") if not p.is_dir())


def _assert_complete_outputs(job_id: str, out: Path, size: tuple[int, int]) -> None:
    """One valid, complete output per succeeded item, and no other file."""
    items = jobs.list_items(job_id)
    expected = sorted(Path(i.output_path) for i in items if i.state == "succeeded")
    assert _files(out) == expected
    _assert_valid(expected, size)


def _assert_valid(paths: list[Path], size: tuple[int, int]) -> None:
    for path in paths:
        with Image.open(path) as result:
            result.load()  # a truncated PNG fails here
            assert result.size == size and result.mode == "RGBA"


def test_sigkill_of_the_pool_process_mid_chunk(fault_env, tmp_path, checkpoint):
    worker = fault_env.start_worker(queues="infer")
    _, out, job_id = _remove_dir_under_way(tmp_path, checkpoint, 16, chunk_size=8)
    running = jobs.get_job(job_id)
    victim = int(running.worker_host.rsplit(":", 1)[1])
    assert victim in worker.pool_pids()  # the prefork child, found in /proc, runs the chunk
    # What a kill during a write leaves behind, planted for sure (the real kill below may
    # or may not land mid-write): the hidden temporary of images.write_atomic beside the
    # output of the chunk's last image. The redo of the dead attempt must remove it.
    last = [i for i in jobs.list_items(job_id) if i.chunk == 0][-1]
    orphan = Path(last.output_path)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    (orphan.parent / f".{orphan.name}.0123456789ab.tmp").write_bytes(b"\x89PNG\r\n partial")
    os.kill(victim, signal.SIGKILL)
    states = {i.id: i.state for i in jobs.list_items(job_id)}
    assert states[last.id] == "running", "the chunk ended before the kill: nothing was tested"

    job = _wait(fault_env, job_id)
    assert job.state == "succeeded", (job, fault_env.log_tail())
    assert job.items == {"succeeded": 16} and job.progress_done == job.progress_total == 16
    assert "exited with 'signal 9 (SIGKILL)'" in worker.text()
    # The dead attempt's images were redone and the planted temporary removed, by whichever
    # came first: the requeued message's claim, or the recovery of the dead pid's images.
    assert "leftover temporary file(s)" in worker.text(), worker.text()[-3000:]
    assert victim not in worker.pool_pids() and worker.alive()
    _assert_complete_outputs(job_id, out, SLOW)


def test_redis_restart_mid_job(fault_env, tmp_path, checkpoint):
    worker = fault_env.start_worker(queues="infer")
    inp, out = tmp_path / "in", tmp_path / "out"
    _photos(inp, 24, (320, 240))
    cli = subprocess.Popen(
        [str(VENV_BIN / "unetbg"), "remove-dir", inp, out, "--checkpoint", checkpoint]
        + ["--chunk-size", "2", "--batch-size", "2", "--wait", "--json"],
        env=fault_env.cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # --json: stdout holds only the final job; the id is the first line on stderr.
        job_id = cli.stderr.readline().strip()
        wait_until(lambda: _succeeded(job_id) >= 2, 120, "the job to be under way", 0.05)
        fault_env.redis.restart()
        restarted_with = _succeeded(job_id)
        stdout, stderr = cli.communicate(timeout=180)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert restarted_with < 24, "the job ended before Redis went down: nothing was tested"
    assert cli.returncode == 0, stderr + fault_env.log_tail()
    job = json.loads(stdout)
    assert job["state"] == "succeeded" and job["items"] == {"succeeded": 24}
    assert worker.alive()
    assert "Connection to broker lost" in worker.text()
    _assert_complete_outputs(job_id, out, (320, 240))


def _drop_queued(cluster, task_id: str, queue: str = "infer") -> None:
    """Remove ``task_id``'s message from ``queue``, as a broker restart can."""
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        raw = [m for m in client.lrange(queue, 0, -1) if json.loads(m)["headers"]["id"] == task_id]
        assert len(raw) == 1, f"{task_id} is not queued: nothing to lose"
        assert client.lrem(queue, 1, raw[0]) == 1
    finally:
        client.close()


def test_resend_lost_sends_exactly_the_unqueued_unclaimed_work(
    fault_env, tmp_path, checkpoint, coco_mini
):
    # No worker: the messages stay where they are put.
    _photos(tmp_path / "in", 6, (64, 48))
    job_id = jobs.create_remove_dir_job(
        tmp_path / "in", tmp_path / "out", str(checkpoint), chunk_size=2
    )
    chunks = [f"{job_id}-chunk{c:04d}" for c in range(3)]
    assert jobs.dispatch(job_id) == []  # the submission queued each chunk as recorded
    train_id = jobs.create_train_job("smoke", SMOKE | {"coco_root": str(coco_mini)})
    (train_task,) = jobs.dispatch(train_id)
    assert jobs.queued_task_ids() >= {*chunks, train_task}
    assert jobs.resend_lost(jobs.queued_task_ids()) == []  # nothing lost

    _drop_queued(fault_env, chunks[1])
    _drop_queued(fault_env, train_task, "train")
    assert jobs.resend_lost(jobs.queued_task_ids()) == [chunks[1], train_task]
    assert jobs.queued_task_ids() >= {*chunks, train_task}
    # A chunk whose images were claimed is under way elsewhere: its message is not lost.
    _drop_queued(fault_env, chunks[2])
    with jobs.db_session() as session:
        for item in session.scalars(select(JobItem).where(JobItem.job_id == job_id)):
            if item.chunk == 2:
                item.state, item.claimed_by = "running", "another-host:1"
        session.flush()
        recount(session, job_id)  # rows written by hand: their counters follow
    assert jobs.resend_lost(jobs.queued_task_ids()) == []
    jobs.cancel_job(job_id)  # a final job has nothing lost either
    jobs.cancel_job(train_id)
    assert jobs.resend_lost(set()) == []


def test_a_message_lost_in_a_redis_restart_is_sent_again(fault_env, tmp_path, checkpoint):
    inp, out = tmp_path / "in", tmp_path / "out"
    _photos(inp, 16, (96, 72))
    job_id = jobs.create_remove_dir_job(inp, out, str(checkpoint), chunk_size=4, batch_size=2)
    jobs.dispatch(job_id)
    # What a restart at the wrong moment does (Redis handed the message out, then
    # stopped before kombu kept it as unacknowledged): chunk 2 is in no queue any more.
    # Dropped before any worker runs, so that it is surely still queued here.
    lost = f"{job_id}-chunk0002"
    _drop_queued(fault_env, lost)
    worker = fault_env.start_worker(queues="infer")
    wait_until(lambda: _succeeded(job_id) >= 12, 120, "the three other chunks", 0.05)
    time.sleep(2)  # the lost chunk does not come by itself
    assert _succeeded(job_id) == 12 and not jobs.get_job(job_id).final
    assert "lost while the broker was away" not in worker.text()  # not at the first connection

    # An idle worker's reconnect: nothing is in flight, so exactly the lost one is sent.
    fault_env.redis.restart()
    job = _wait(fault_env, job_id)
    assert job.state == "succeeded" and job.items == {"succeeded": 16}, fault_env.log_tail()
    assert f"sent again 1 message(s) lost while the broker was away: {lost}" in worker.text()
    _assert_complete_outputs(job_id, out, (96, 72))


def test_two_workers_share_a_queue_and_one_sqlite_file(fault_env, tmp_path, checkpoint):
    # Three pool processes, this test process and the CLI all write the same SQLite file.
    first = fault_env.start_worker(queues="infer", concurrency=1)
    second = fault_env.start_worker(queues="infer", concurrency=2)
    inp, out = tmp_path / "in", tmp_path / "out"
    _photos(inp, 24, (96, 72))
    job_id = jobs.create_remove_dir_job(inp, out, str(checkpoint), chunk_size=2, batch_size=2)
    jobs.dispatch(job_id)
    deadline = time.monotonic() + 180
    while not jobs.get_job(job_id).final:  # readers beside the writers
        assert time.monotonic() < deadline, f"job not final after 180 s\n{fault_env.log_tail()}"
        assert CliRunner().invoke(main, ["jobs", "--json"]).exit_code == 0
        time.sleep(0.05)
    job = _wait(fault_env, job_id, timeout=10)
    assert job.state == "succeeded", fault_env.log_tail()
    assert job.items == {"succeeded": 24} and job.progress_done == 24
    # Celery logs a task's "succeeded" line after the task returns, which is after the job
    # turned final inside it: wait for the twelfth line rather than race the last one.
    task = f"Task unetbg.remove_chunk[{job_id}-chunk"
    deadline = time.monotonic() + 30
    while sum(_finished(w.text(), task) for w in (first, second)) < 12:
        assert time.monotonic() < deadline, fault_env.log_tail()
        time.sleep(0.1)
    logs = [first.text(), second.text()]
    chunks = [_finished(log, task) for log in logs]
    assert all(chunks) and sum(chunks) == 12, chunks  # each received and finished some
    assert [log.count(task) for log in logs] == [2 * n for n in chunks]  # one receipt each
    for log in logs:
        assert "database is locked" not in log and "OperationalError" not in log
    _assert_complete_outputs(job_id, out, (96, 72))


def test_cancel_a_running_remove_dir(fault_env, tmp_path, checkpoint):
    worker = fault_env.start_worker(queues="infer")
    _, out, job_id = _remove_dir_under_way(tmp_path, checkpoint, 32, chunk_size=8)
    result = CliRunner().invoke(main, ["cancel", job_id])
    at_cancel = _succeeded(job_id)
    assert result.exit_code == 0 and "cancel requested" in result.output, result.output

    job = _wait(fault_env, job_id, timeout=60)
    assert job.state == "cancelled"
    assert set(job.items) == {"succeeded", "cancelled"}
    assert job.items["succeeded"] + job.items["cancelled"] == 32
    # The running chunk stopped at its next image (at most the one in flight finished).
    assert job.items["succeeded"] - at_cancel <= 1, (at_cancel, job.items)
    items = jobs.list_items(job_id)
    first_chunk = [i for i in items if i.chunk == 0]
    assert {i.state for i in first_chunk} == {"succeeded", "cancelled"}
    later = [i for i in items if i.chunk != 0]
    assert {(i.state, i.error) for i in later} == {("cancelled", "cancelled before it started")}
    # Queued chunks were revoked. The revoke is published after the cancel commits, so a
    # chunk the worker takes in between runs, sees the flag and processes nothing;
    # every other queued chunk is discarded unrun.
    wait_until(lambda: "Tasks flagged as revoked" in worker.text(), 30, "the revoke to arrive")
    for chunk in range(1, 4):
        task = f"unetbg.remove_chunk[{job_id}-chunk{chunk:04d}]"
        wait_until(
            lambda task=task: (
                f"Discarding revoked task: {task}" in worker.text()
                # Taken before the revoke arrived: it found its images cancelled and
                # stopped (JobCancelled, which Celery logs as ignored).
                or f"{task} ignored" in worker.text()
                or re.search(
                    re.escape(task) + r" succeeded in [\d.e-]+s: .*'processed': 0\}", worker.text()
                )
            ),
            30,
            f"{task} to be discarded or to stop without processing an image",
        )
    _assert_complete_outputs(job_id, out, SLOW)


def _status(cluster, job_id: str, *args: str, timeout_s: int = 2):
    """``unetbg status`` as a user would run it, with a short heartbeat timeout."""
    return subprocess.run(
        [str(VENV_BIN / "unetbg"), "status", job_id, *args],
        env=cluster.cli_env(UNETBG_HEARTBEAT_TIMEOUT=str(timeout_s)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _field(shown: str, name: str) -> str:
    """The value of one ``name  value`` row of ``unetbg status``'s output."""
    for line in shown.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return value.strip()
    raise AssertionError(f"no {name!r} row in:\n{shown}")


def test_vanished_remove_dir_worker_is_reported(fault_env, tmp_path, checkpoint):
    worker = fault_env.start_worker(queues="infer")
    inp, out, job_id = _remove_dir_under_way(tmp_path, checkpoint, 12, chunk_size=12)
    os.killpg(worker.proc.pid, signal.SIGKILL)  # the whole worker: host gone
    worker.proc.wait(10)
    assert jobs.get_job(job_id).state == "running"
    time.sleep(3)

    # No worker is left to send the images again: after twice the heartbeat timeout
    # (1 s here) `status` reports them lost instead.
    shown = _status(fault_env, job_id, "--items", "failed", timeout_s=1)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    job = jobs.get_job(job_id)
    assert job.state == "partial" and set(job.items) == {"succeeded", "failed"}
    lost = jobs.list_items(job_id, ["failed"])
    assert lost and all(
        i.error.startswith("lost: worker ") and "stopped reporting" in i.error for i in lost
    )
    assert _field(shown.stdout, "state") == "partial"
    assert sum(i.error in shown.stdout for i in lost) == len(lost)
    # Every output present is complete; the only other file possible is the hidden
    # temporary of the image the dead host was writing. A file is published just before
    # its item is recorded, so the kill may fall between the two for the one image being
    # reported: that image shows as lost and keeps its complete file (a re-run skips it).
    written = {p for p in _files(out) if not p.name.startswith(".")}
    succeeded = {Path(i.output_path) for i in jobs.list_items(job_id, ["succeeded"])}
    unrecorded = written - succeeded
    assert succeeded <= written and len(unrecorded) <= 1
    assert unrecorded <= {Path(i.output_path) for i in lost}
    lost_names = {f".{Path(i.output_path).name}" for i in lost}
    assert {p.name.rsplit(".", 2)[0] for p in _files(out) if p.name.startswith(".")} <= lost_names

    # Running the same remove-dir again (on a live worker) redoes exactly those images
    # and clears such temporaries (one planted for sure: the kill may miss a write).
    missing = [Path(i.output_path) for i in lost if Path(i.output_path) not in unrecorded]
    for planted in missing[:1]:
        (planted.parent / f".{planted.name}.abcdef012345.tmp").write_bytes(b"\x89PNG partial")
    fault_env.start_worker(queues="infer")
    again = jobs.create_remove_dir_job(inp, out, str(checkpoint), chunk_size=12)
    jobs.dispatch(again)
    redo = _wait(fault_env, again)
    redone = len(lost) - len(unrecorded)
    assert redo.items == {"succeeded": redone, "skipped": 12 - redone}
    assert _files(out) == sorted(out / f"img{i:03d}.png" for i in range(12))
    _assert_valid(_files(out), SLOW)


def test_vanished_training_worker_is_reported(fault_env, coco_mini):
    worker = fault_env.start_worker(queues="train")
    job_id = jobs.create_train_job("smoke", SMOKE | {"coco_root": str(coco_mini)})
    jobs.dispatch(job_id)
    wait_until(lambda: jobs.get_job(job_id).state == "running", 60, "the run to start")
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(10)
    time.sleep(1.5)
    assert _status(fault_env, job_id, timeout_s=30).returncode == 0  # not stale yet
    time.sleep(2)

    shown = _status(fault_env, job_id)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    job = jobs.get_job(job_id)
    assert job.state == "failed" and job.error.startswith("lost: worker ")
    assert "stopped reporting" in job.error and "a redelivered task resumes it" in job.error
    assert _field(shown.stdout, "state") == "failed"
    assert _field(shown.stdout, "error") == job.error
    listed = json.loads(CliRunner().invoke(main, ["jobs", "--json"]).output)
    assert next(j for j in listed if j["id"] == job_id)["state"] == "failed"


def test_training_killed_mid_epoch_resumes_from_its_last_checkpoint(fault_env, coco_mini):
    # tests/jobs/test_celery.py shows a killed run finishing; this pins down *where* it
    # resumes: inside epoch 2, from epoch 1's last_model.pth, epoch 1 left as recorded.
    worker = fault_env.start_worker(queues="train")
    config = SMOKE | {"coco_root": str(coco_mini), "epochs": 3, "max_steps_per_epoch": 8}
    job_id = jobs.create_train_job("smoke", config)
    jobs.dispatch(job_id)
    wait_until(lambda: jobs.list_epoch_metrics(job_id), 180, "epoch 1's metrics", 0.05)
    first = jobs.get_job(job_id)
    epoch1 = jobs.list_epoch_metrics(job_id)
    (last,) = [c for c in jobs.list_checkpoints(job_id) if c.path.endswith("last_model.pth")]
    victim = int(first.worker_host.rsplit(":", 1)[1])
    assert victim in worker.pool_pids()
    time.sleep(0.3)  # into epoch 2's steps
    os.kill(victim, signal.SIGKILL)
    assert [m.epoch for m in jobs.list_epoch_metrics(job_id)] == [1, 1], "epoch 2 had ended"
    assert last.epoch == 1 and last.sha256 == file_sha256(last.path)

    job = _wait(fault_env, job_id)
    assert job.state == "succeeded", (job.error, fault_env.log_tail())
    assert job.attempts == 2 and job.result["epochs_completed"] == 3
    metrics = jobs.list_epoch_metrics(job_id)
    assert [(m.epoch, m.split) for m in metrics] == [
        (e, s) for e in (1, 2, 3) for s in ("train", "val")
    ]
    assert metrics[:2] == epoch1  # epoch 1 was not trained (or recorded) again
    run_log = (Path(job.params["run_dir"]) / "train.log").read_text()
    assert f"resumed {job.params['run_dir']} at epoch 2 step 0" in run_log


def _cli(cluster, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``unetbg ARGS`` as a user runs it on ``cluster``; a hang fails the test."""
    try:
        return subprocess.run(
            [str(VENV_BIN / "unetbg"), *args],
            env=cluster.cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"unetbg {' '.join(args)} hung\n{cluster.log_tail()}") from exc


def test_retry_after_cancel_sends_new_task_ids_and_finishes(fault_env, tmp_path, checkpoint):
    # Issue 20, item 1: the cancel revokes the queued chunks' task ids, and a worker keeps
    # revoked ids for as long as it runs; a retry that sent the same ids again was
    # discarded unrun ("Discarding revoked task") and its job waited for ever.
    worker = fault_env.start_worker(queues="infer")
    _, out, job_id = _remove_dir_under_way(tmp_path, checkpoint, 12, chunk_size=4)
    jobs.cancel_job(job_id)
    wait_until(lambda: "Tasks flagged as revoked" in worker.text(), 30, "the revoke to arrive")
    cancelled = _wait(fault_env, job_id, timeout=60)
    assert cancelled.state == "cancelled" and cancelled.items.get("cancelled"), cancelled.items

    retried = _cli(fault_env, "retry", job_id, "--wait", "--json")
    assert retried.returncode == 0, retried.stderr + fault_env.log_tail()
    job = json.loads(retried.stdout)
    assert job["state"] == "succeeded" and job["items"] == {"succeeded": 12}
    # The chunks of the retry ran under the job's next send round.
    assert f"Task unetbg.remove_chunk[{job_id}-chunk0002-r1] received" in worker.text()
    _assert_complete_outputs(job_id, out, SLOW)


def test_a_killed_worker_s_images_finish_on_another_worker(fault_env, tmp_path, checkpoint):
    # Issue 20, item 3: a worker killed whole (kill -9 of its process group) leaves its
    # chunk's message unacknowledged for the visibility timeout (hours) and its images
    # "running" under a dead pid. The other worker sees the dead pid (same host) and sends
    # those images again: the job finishes without anyone running `unetbg retry`.
    first = fault_env.start_worker(queues="infer", name=f"first-{os.getpid()}")
    inp, out, job_id = _remove_dir_under_way(tmp_path, checkpoint, 8, chunk_size=8)
    victim = jobs.get_job(job_id).worker_host  # the claimant of the one chunk's images
    assert int(victim.rsplit(":", 1)[1]) in first.pool_pids()
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    held = [i.id for i in jobs.list_items(job_id) if i.state == "running"]
    assert held, "the chunk ended before the kill: nothing was tested"
    second = fault_env.start_worker(queues="infer", name=f"second-{os.getpid()}")

    job = _wait(fault_env, job_id)
    assert job.state == "succeeded" and job.items == {"succeeded": 8}, fault_env.log_tail()
    attempts = {i.id: i.attempts for i in jobs.list_items(job_id)}
    assert all(attempts[i] == 2 for i in held), attempts  # recorded: the second claim
    assert f"worker(s) {victim} (" in second.text() and "died holding" in second.text()
    assert f"sent again 1 chunk(s) of dead workers: {job_id}-chunk0000-r1" in second.text()
    _assert_complete_outputs(job_id, out, SLOW)


def test_an_image_whose_workers_keep_dying_fails_after_its_last_attempt(
    fault_env, tmp_path, checkpoint
):
    # Bounded: an image claimed MAX_ITEM_ATTEMPTS times by workers that all died fails
    # as lost instead of being sent again (a photo that kills every worker it meets).
    from unetbg.jobs.claims import MAX_ITEM_ATTEMPTS

    _photos(tmp_path / "in", 2, (64, 48))
    job_id = jobs.create_remove_dir_job(
        tmp_path / "in", tmp_path / "out", str(checkpoint), chunk_size=2
    )
    # The chunk queued while the job was recorded is gone as well (a dead worker's message
    # stays unacknowledged until the visibility timeout): only the lost-work recovery can
    # finish these images, and it is what this test is about.
    import redis

    redis.Redis.from_url(fault_env.env["UNETBG_BROKER_URL"]).delete("infer")
    dead = f"{socket.gethostname()}:{_dead_pid()}"
    with jobs.db_session() as session:
        job = session.get(Job, job_id)
        job.state = "running"
        for item in session.scalars(select(JobItem).where(JobItem.job_id == job_id)):
            last = item.source_path.endswith("img000.jpg")
            item.state, item.claimed_by = "running", dead
            item.attempts = MAX_ITEM_ATTEMPTS if last else 1
        session.flush()
        recount(session, job_id)  # rows written by hand: their counters follow
    worker = fault_env.start_worker(queues="infer")
    job = _wait(fault_env, job_id)
    assert job.state == "partial" and job.items == {"succeeded": 1, "failed": 1}
    (failed,) = jobs.list_items(job_id, ["failed"])
    assert failed.source_path.endswith("img000.jpg") and failed.attempts == MAX_ITEM_ATTEMPTS
    assert failed.error.startswith(f"lost: worker {dead} stopped while processing it")
    assert "1 failed after 3 attempts" in worker.text()


def _dead_pid() -> int:
    """The pid of a process of this host that has ended (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
