"""Jobs through real Redis and a real prefork Celery worker (see conftest.py)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from service_fixtures import (
    SMOKE_TRAINING,
    VENV_BIN,
    copy_photos,
    free_port,
    stop_process,
    wait_until,
)
from unetbg import jobs
from unetbg.backends import AUTO_ORDER
from unetbg.cli import main
from unetbg.durable import file_sha256
from unetbg.settings import get_settings

pytestmark = pytest.mark.services


def _wait(cluster, job_id: str, timeout: float = 180) -> jobs.JobView:
    try:
        return jobs.wait_for_job(job_id, poll_s=0.3, timeout_s=timeout)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{cluster.log_tail()}") from None


def _epochs(job_id: str) -> list[tuple[int, str]]:
    return [(m.epoch, m.split) for m in jobs.list_epoch_metrics(job_id)]


def test_remove_dir_on_a_worker(broker_env, photos, tmp_path, checkpoint):
    out = tmp_path / "out"
    job_id = jobs.create_remove_dir_job(photos, out, str(checkpoint))  # chunk size 2 (env)
    assert jobs.dispatch(job_id) == []  # the submission queued each chunk as recorded
    job = _wait(broker_env, job_id)
    assert job.state == "succeeded", (job, broker_env.log_tail())
    assert job.items == {"succeeded": 5}
    # It ran in the worker's child process, not here.
    assert job.worker_host and not job.worker_host.endswith(f":{os.getpid()}")
    # The job keeps what was asked (auto) and says what the worker ran: one backend, once.
    assert job.params["backend"] == "auto"
    assert len(job.params["backends"]) == 1 and job.params["backends"][0] in AUTO_ORDER["cpu"]
    for item in jobs.list_items(job_id):
        with Image.open(item.source_path) as src, Image.open(item.output_path) as res:
            assert res.size == src.size and res.mode == "RGBA"
    # Redelivering a finished chunk (by name, as the broker would) changes nothing.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    first = [i.id for i in jobs.list_items(job_id) if i.chunk == 0]
    from unetbg.workers.app import REMOVE_CHUNK_TASK, get_app

    get_app().send_task(REMOVE_CHUNK_TASK, args=[job_id, first], task_id=f"{job_id}-again")
    wait_until(lambda: f"{job_id}-again] succeeded" in broker_env.log_tail(200), 60, "redelivery")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_cli_remove_dir_wait_and_status(broker_env, coco_mini, tmp_path, checkpoint):
    photos = tmp_path / "in"
    copy_photos(coco_mini, photos, 3, offset=10)
    env = {k: v for k, v in os.environ.items()}
    cmd = [str(VENV_BIN / "unetbg"), "remove-dir", str(photos), str(tmp_path / "out")]
    done = subprocess.run(
        [*cmd, "--checkpoint", str(checkpoint), "--wait", "--json", "--chunk-size", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr + broker_env.log_tail()
    payload = json.loads(done.stdout)  # one JSON document; the id went to stderr
    job_id = payload["id"]
    assert payload["state"] == "succeeded"
    # stderr is a pipe: plain progress lines (no tqdm bar), with their throughput.
    assert "\r" not in done.stderr and "img/s" in done.stderr

    result = CliRunner().invoke(main, ["status", job_id, "--items", "all", "--json"])
    assert result.exit_code == 0, result.output
    status, *listed = map(json.loads, result.output.splitlines())  # the job, its items
    assert status["items"] == {"succeeded": 3}
    assert len(listed) == 3
    listed = CliRunner().invoke(main, ["jobs", "--kind", "remove_dir", "--json"])
    assert job_id in {j["id"] for j in json.loads(listed.output)}


def test_cancel_revokes_queued_chunks(broker_env, coco_mini, tmp_path, checkpoint):
    photos = tmp_path / "in"
    copy_photos(coco_mini, photos, 8, offset=20)
    out = tmp_path / "out"
    job_id = jobs.create_remove_dir_job(photos, out, str(checkpoint), chunk_size=1)
    jobs.dispatch(job_id)
    result = CliRunner().invoke(main, ["cancel", job_id])
    assert result.exit_code == 0, result.output
    job = _wait(broker_env, job_id)
    assert job.state == "cancelled"
    assert job.items.get("cancelled", 0) >= 6 and set(job.items) <= {"succeeded", "cancelled"}
    written = {p.name for p in out.rglob("*.png")} if out.exists() else set()
    for item in jobs.list_items(job_id):
        assert (Path(item.output_path).name in written) == (item.state == "succeeded")


def test_training_job_records_epochs_and_checkpoints(broker_env, coco_mini):
    job_id = jobs.create_train_job("smoke", SMOKE_TRAINING | {"coco_root": str(coco_mini)})
    assert jobs.dispatch(job_id) == [f"{job_id}-train"]
    job = _wait(broker_env, job_id)
    assert job.state == "succeeded", (job.error, broker_env.log_tail())
    assert job.result["status"] == "completed" and job.progress_done == 1
    assert _epochs(job_id) == [(1, "train"), (1, "val")]
    val = [m for m in jobs.list_epoch_metrics(job_id) if m.split == "val"][0]
    assert 0 <= val.iou <= 1 and val.loss > 0

    rows = {Path(c.path).name: c for c in jobs.list_checkpoints(job_id)}
    assert set(rows) == {"best_model.pth", "last_model.pth"}
    assert rows["best_model.pth"].is_best and not rows["last_model.pth"].is_best
    for row in rows.values():
        assert row.sha256 == file_sha256(row.path) and row.epoch == 1
    assert Path(rows["best_model.pth"].path).parent == Path(job.params["run_dir"])
    assert rows["best_model.pth"].val_iou == pytest.approx(val.iou)
    # `best` among the registered only: one epoch does not beat the default model.
    no_default = replace(get_settings(), default_model="none")
    assert jobs.resolve_checkpoint("best", no_default) == rows["best_model.pth"].path


def test_cancel_running_training_keeps_last_checkpoint(broker_env, coco_mini):
    job_id = jobs.create_train_job(
        "smoke", SMOKE_TRAINING | {"coco_root": str(coco_mini), "epochs": 40}
    )
    jobs.dispatch(job_id)
    wait_until(lambda: _epochs(job_id), 180, "the first epoch's metrics")
    view = jobs.cancel_job(job_id)
    assert view.cancel_requested and view.state == "running"
    job = _wait(broker_env, job_id, timeout=60)
    assert job.state == "cancelled" and job.result["status"] == "cancelled"
    assert 1 <= job.result["epochs_completed"] < 40
    last = [c for c in jobs.list_checkpoints(job_id) if c.path.endswith("last_model.pth")]
    assert last and Path(last[0].path).is_file()
    assert last[0].sha256 == file_sha256(last[0].path)
    # Celery ignores the cancelled run (no failure): Flower shows it REVOKED, not FAILURE.
    wait_until(
        lambda: f"{job_id}-train] ignored" in broker_env.log_tail(400),
        30,
        "the worker to log the task's JobCancelled outcome",
    )


@pytest.mark.fault
def test_killed_worker_process_resumes_training(broker_env, coco_mini):
    job_id = jobs.create_train_job(
        "smoke", SMOKE_TRAINING | {"coco_root": str(coco_mini), "epochs": 3}
    )
    jobs.dispatch(job_id)
    wait_until(lambda: _epochs(job_id), 180, "the first epoch's metrics")
    first = jobs.get_job(job_id)
    pid = int(first.worker_host.rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)  # the worker's pool child running the task
    job = _wait(broker_env, job_id)
    assert job.state == "succeeded", (job.error, broker_env.log_tail())
    assert job.attempts == 2 and job.worker_host != first.worker_host
    # The resumed run rewrote, never duplicated, the epoch it redid.
    assert _epochs(job_id) == [(e, s) for e in (1, 2, 3) for s in ("train", "val")]
    assert job.result["epochs_completed"] == 3


def _get(url: str, auth: str | None = None):
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_flower_shows_worker_and_job_tasks(broker_env, photos, tmp_path, checkpoint):
    port, auth = free_port(), "tester:s3cret"
    env = dict(os.environ) | {"UNETBG_FLOWER_BASIC_AUTH": auth}
    with open(tmp_path / "flower.log", "wb") as log:
        flower = subprocess.Popen(
            [str(VENV_BIN / "unetbg"), "flower", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def workers():
            try:
                return _get(f"{base}/api/workers", auth)
            except (urllib.error.URLError, ConnectionError):
                return None

        names = wait_until(workers, 60, "Flower's /api/workers")
        assert any(name.startswith("test-") for name in names), names
        with pytest.raises(urllib.error.HTTPError) as denied:
            _get(f"{base}/api/workers")
        assert denied.value.code == 401

        job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint))
        jobs.dispatch(job_id)
        assert _wait(broker_env, job_id).state == "succeeded"

        def job_tasks():
            tasks = _get(f"{base}/api/tasks", auth)
            mine = {k: v for k, v in tasks.items() if k.startswith(job_id)}
            return (
                mine
                if len(mine) == 3 and all(t["state"] == "SUCCESS" for t in mine.values())
                else None
            )

        tasks = wait_until(job_tasks, 60, "Flower to list the job's three chunk tasks")
        for task in tasks.values():
            assert task["name"] == "unetbg.remove_chunk"
            assert f"job={job_id}" in task["args"]

        # A chunk with a failed image is FAILURE in Flower (its "Failed" filter), the
        # others SUCCESS; neither is retried nor redelivered.
        (photos / "broken.png").write_bytes(b"not a png")
        partial = jobs.create_remove_dir_job(photos, tmp_path / "out2", str(checkpoint))
        jobs.dispatch(partial)
        assert _wait(broker_env, partial).state == "partial"
        (bad,) = [i for i in jobs.list_items(partial) if i.state == "failed"]

        def partial_tasks():
            tasks = _get(f"{base}/api/tasks", auth)
            mine = {k: v for k, v in tasks.items() if k.startswith(partial)}
            done = all(t["state"] in ("SUCCESS", "FAILURE") for t in mine.values())
            return mine if len(mine) == 3 and done else None

        tasks = wait_until(partial_tasks, 60, "Flower to list the partial job's chunk tasks")
        states = {k: t["state"] for k, t in tasks.items()}
        assert states[f"{partial}-chunk{bad.chunk:04d}"] == "FAILURE", states
        assert sorted(states.values()) == ["FAILURE", "SUCCESS", "SUCCESS"], states
        failed = tasks[f"{partial}-chunk{bad.chunk:04d}"]
        assert "ImagesFailed" in failed["exception"] and "1 of 2 images" in failed["exception"]
        assert failed["retries"] == 0
        assert f"{partial}-chunk{bad.chunk:04d}] raised expected: ImagesFailed" in (
            broker_env.log_tail(400)
        )
    finally:
        stop_process(flower)


@pytest.mark.fault
def test_worker_survives_a_redis_restart(broker_env, coco_mini, tmp_path, checkpoint):
    photos = tmp_path / "in"
    copy_photos(coco_mini, photos, 2, offset=40)
    broker_env.redis.restart()  # an empty Redis (no persistence): the worker must reconnect
    job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint))
    jobs.dispatch(job_id)
    job = _wait(broker_env, job_id, timeout=120)
    assert job.state == "succeeded", broker_env.log_tail()
    assert broker_env.worker.poll() is None


def test_duplicate_delivery_of_a_live_run_is_deferred(broker_env):
    from unetbg.db.models import Job, utcnow
    from unetbg.workers.app import TRAIN_TASK, get_app

    with jobs.db_session() as session:
        # A run that another live worker (fresh heartbeat) is in the middle of.
        job = Job(
            kind="train",
            state="running",
            heartbeat_at=utcnow(),
            attempts=1,
            worker_host="other-host:4242",
            params={"config": {}, "run_dir": "/nowhere"},
        )
        session.add(job)
    get_app().send_task(TRAIN_TASK, args=[job.id], task_id=f"{job.id}-train")
    wait_until(
        lambda: (
            f"job {job.id}: still running in live worker other-host:4242; deferring"
            in broker_env.log_tail(300)
        ),
        60,
        "the worker to defer the duplicate",
    )
    view = jobs.get_job(job.id)
    assert (view.state, view.attempts, view.worker_host) == ("running", 1, "other-host:4242")
    with jobs.db_session() as session:  # the original run ends; the deferred copy will drop
        session.get(Job, job.id).state = "succeeded"


def test_worker_command_pins_the_gpu_before_celery_starts(broker_env, tmp_path):
    with open(tmp_path / "w.log", "wb") as log:
        proc = subprocess.Popen(
            [str(VENV_BIN / "unetbg"), "worker", "--gpu", "3", "-Q", "infer"],
            env=dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # exec keeps the pid: once the command line is Celery's, the env is final.
        cmdline = wait_until(
            lambda: b"celery" in (c := Path(f"/proc/{proc.pid}/cmdline").read_bytes()) and c,
            60,
            "unetbg worker to exec celery",
        )
        # A node name unique per worker process: the queues, the GPU and the pid.
        assert f"unetbg-infer-gpu3-{proc.pid}@".encode() in cmdline
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        assert b"CUDA_VISIBLE_DEVICES=3" in environ
    finally:
        stop_process(proc)
