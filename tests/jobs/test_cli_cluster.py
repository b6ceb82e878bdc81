"""The job commands as a user runs them against a broker: the ``unetbg`` executable from
a scratch folder, a real Redis and a real Celery worker started in another folder.

Paths, ``--json`` and exit statuses per command (embedded mode: ``test_cli_contract.py``).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from service_fixtures import (
    SMOKE_TRAINING,
    VENV_BIN,
    copy_photos,
    make_cluster,
    stop_process,
    use_cluster,
    wait_until,
)

pytestmark = pytest.mark.services


def unetbg(cluster, cwd: Path, *args: object, timeout: float = 240) -> subprocess.CompletedProcess:
    """The installed ``unetbg`` run in ``cwd`` against ``cluster`` (stdout, stderr apart)."""
    return subprocess.run(
        [str(VENV_BIN / "unetbg"), *map(str, args)],
        cwd=cwd,
        env=cluster.cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_relative_folders_work_on_a_worker_elsewhere(cluster, coco_mini, tmp_path, checkpoint):
    # The worker runs in the repository; this command in a scratch folder, with
    # relative input and output folders and a relative checkpoint path.
    copy_photos(coco_mini, tmp_path / "in", 3, offset=30)
    (tmp_path / "model.pth").write_bytes(checkpoint.read_bytes())
    done = unetbg(
        cluster,
        tmp_path,
        "remove-dir",
        "in",
        "out",
        "--checkpoint",
        "model.pth",
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr + cluster.log_tail()
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded" and job["items"] == {"succeeded": 3}
    assert job["params"]["checkpoint"] == str(tmp_path / "model.pth")
    assert len(list((tmp_path / "out").rglob("*.png"))) == 3

    lines = unetbg(cluster, tmp_path, "status", job["id"], "--items", "all", "--json").stdout
    _, *listed = map(json.loads, lines.splitlines())  # JSON Lines: the job, then its items
    assert len(listed) == 3
    for item in listed:
        assert Path(item["source_path"]).is_absolute() and Path(item["output_path"]).is_absolute()
        assert item["source_path"].startswith(str(tmp_path / "in"))


def test_json_is_one_document_with_a_broker(cluster, coco_mini, tmp_path, checkpoint):
    copy_photos(coco_mini, tmp_path / "in", 1, offset=33)
    submits = {
        "remove-dir": ("remove-dir", "in", "out", "--checkpoint", checkpoint),
        "submit-evaluate": ("submit-evaluate", checkpoint, "--coco-root", coco_mini, "--limit", 1),
        "submit-train": (
            "submit-train", "--preset", "smoke", "--coco-root", coco_mini,
            *[a for k, v in SMOKE_TRAINING.items() for a in (f"--{k.replace('_', '-')}", v)],
        ),
    }  # fmt: skip
    for name, args in submits.items():
        # Without --wait: the job as queued; with --wait: the final job. Both one document.
        for wait in ((), ("--wait",)):
            done = unetbg(cluster, tmp_path, *args, "--json", *wait)
            assert done.returncode == 0, (name, wait, done.stderr, cluster.log_tail())
            job = json.loads(done.stdout)  # fails on an id line before the object
            assert done.stderr.splitlines()[0] == job["id"], (name, done.stderr)
            wanted = {"succeeded"} if wait else {"queued", "running", "succeeded"}
            assert job["state"] in wanted, (name, job)
            if name == "remove-dir":  # the second run finds every output there
                break


def test_two_default_workers_on_one_host_are_two_nodes(redis_server, tmp_path, monkeypatch):
    """`unetbg worker` twice with the same options: two node names, both answering."""
    from unetbg.workers.app import get_app

    # A broker database of its own: only these two workers answer the ping.
    own_broker = redis_server.url.rsplit("/", 1)[0] + "/7"
    cluster = make_cluster(tmp_path, redis_server, UNETBG_BROKER_URL=own_broker)
    use_cluster(cluster, monkeypatch)
    procs, logs = [], []
    try:
        for n in range(2):
            logs.append(tmp_path / f"worker{n}.log")
            with open(logs[-1], "wb") as log:
                procs.append(
                    subprocess.Popen(
                        [str(VENV_BIN / "unetbg"), "worker", "--queues", "infer"],
                        cwd=tmp_path,
                        env=cluster.cli_env(OMP_NUM_THREADS="1"),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        for log in logs:
            wait_until(lambda log=log: b" ready." in log.read_bytes(), 120, f"{log.name} ready")

        def two_nodes():
            replies = get_app().control.ping(timeout=2.0)
            return sorted(name for reply in replies for name in reply) if len(replies) >= 2 else []

        names = wait_until(two_nodes, 60, "both workers to answer a ping")
        assert len(names) == 2 and names[0] != names[1], names
        for proc in procs:  # unetbg-<queues>-<pid>@<host>: the pid is the worker's own
            assert any(name.startswith(f"unetbg-infer-{proc.pid}@") for name in names), names
    finally:
        for proc in procs:
            stop_process(proc)


def test_exit_statuses_with_a_broker(cluster, coco_mini, tmp_path, checkpoint):
    copy_photos(coco_mini, tmp_path / "in", 2, offset=36)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    usage = [
        ("status", "nosuchjob"),
        ("cancel", "nosuchjob"),
        ("remove-dir", "missing", "out", "--checkpoint", checkpoint),
        ("remove-dir", "in", "out", "--checkpoint", "junk.pth"),
        ("submit-evaluate", "junk.pth", "--coco-root", coco_mini),
        ("remove", "missing.jpg", "-o", "out", "--checkpoint", checkpoint),
        ("worker", "--queues", "gpu"),
    ]
    for args in usage:
        done = unetbg(cluster, tmp_path, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()

    partial = unetbg(
        cluster, tmp_path, "remove-dir", "in", "out", "--checkpoint", checkpoint, "--wait"
    )
    assert partial.returncode == 1, partial.stderr + cluster.log_tail()
    job_id = partial.stdout.strip()
    assert unetbg(cluster, tmp_path, "status", job_id).returncode == 1
    again = unetbg(cluster, tmp_path, "remove-dir", "in", "out", "--checkpoint", checkpoint)
    assert again.returncode == 0  # queued, not followed: nothing has gone wrong yet


def test_a_queue_nobody_consumes_is_named(cluster, redis_server, coco_mini, tmp_path, checkpoint):
    """No worker on the job's broker: after a few seconds `status` and `--wait` say which
    queue nobody consumes and how to start a worker for it."""
    from unetbg.workers.app import queue_consumers

    # The module's worker consumes both queues of its broker.
    assert queue_consumers("infer", _settings(cluster.env)) == [
        f"{cluster.workers[0].name}@" + _host()
    ]
    lonely = make_cluster(
        tmp_path / "lonely",
        redis_server,
        UNETBG_BROKER_URL=redis_server.url.rsplit("/", 1)[0] + "/8",
    )
    copy_photos(coco_mini, tmp_path / "in", 1, offset=39)
    submitted = unetbg(lonely, tmp_path, "remove-dir", "in", "out", "--checkpoint", checkpoint)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    hint = "no worker consumes the 'infer' queue"
    # Just queued, no hint yet: asked for a fixed moment, since a loaded machine may
    # start `unetbg status` later than the grace period.
    from datetime import timedelta

    from unetbg.jobs import get_job
    from unetbg.jobs.hints import QUEUE_HINT_AFTER_S, waiting_hints

    settings = _settings(lonely.env)
    job = get_job(job_id, settings=settings)
    early = job.created_at + timedelta(seconds=QUEUE_HINT_AFTER_S - 1)
    assert waiting_hints(job, settings, now=early) == []
    time.sleep(QUEUE_HINT_AFTER_S)
    status = unetbg(lonely, tmp_path, "status", job_id, "--json")
    assert status.returncode == 0, status.stderr
    assert hint in status.stderr and "`unetbg worker --queues infer`" in status.stderr
    assert json.loads(status.stdout)["hints"][0].startswith(hint)

    evaluate = subprocess.Popen(
        [
            str(VENV_BIN / "unetbg"),
            "submit-evaluate",
            str(checkpoint),
            "--coco-root",
            str(coco_mini),
            "--wait",
        ],
        cwd=tmp_path,
        env=lonely.cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("'train' queue" in line for line in lines):
            lines.append(evaluate.stderr.readline())
        text = "".join(lines)
        assert "note: no worker consumes the 'train' queue" in text, text
        assert "`unetbg worker --queues train`" in text
    finally:
        stop_process(evaluate)


def _settings(env: dict[str, str]):
    from unetbg.settings import get_settings

    return get_settings(env)


def _host() -> str:
    import socket

    return socket.gethostname()


def test_lost_messages_are_flagged_and_retried(tmp_path, coco_mini, checkpoint, monkeypatch):
    """A Redis restarted without persistence loses the queued chunks: the job stays
    queued, `status` flags its images unclaimed past the visibility window, and
    `unetbg retry` sends them again to a worker."""
    import redis as redis_lib

    from service_fixtures import start_redis
    from unetbg import jobs

    (tmp_path / "redis-data").mkdir()
    redis = start_redis(tmp_path / "redis-data")
    lossy = make_cluster(tmp_path, redis, UNETBG_VISIBILITY_TIMEOUT="8")
    use_cluster(lossy, monkeypatch)
    try:
        copy_photos(coco_mini, tmp_path / "in", 3, offset=42)
        job_id = jobs.create_remove_dir_job(tmp_path / "in", tmp_path / "out", str(checkpoint))
        # Both chunks were queued as they were recorded (streaming submission); no worker yet.
        assert jobs.dispatch(job_id) == []
        assert redis_lib.Redis.from_url(redis.url).llen("infer") == 2
        redis.restart()  # no appendonly: the queued messages are gone
        lossy.start_worker()
        time.sleep(3)
        assert jobs.get_job(job_id).state == "queued"  # nobody will ever run it

        def flagged():
            done = unetbg(lossy, tmp_path, "status", job_id)
            return "visibility window" in done.stderr and done

        status = wait_until(flagged, 60, "status to flag the unclaimed images", interval=1)
        assert "3 image(s) of job" in status.stderr and f"`unetbg retry {job_id}`" in status.stderr
        retried = unetbg(lossy, tmp_path, "retry", job_id, "--wait", "--json")
        assert retried.returncode == 0, retried.stderr + lossy.log_tail()
        assert json.loads(retried.stdout)["items"] == {"succeeded": 3}
        assert len(list((tmp_path / "out").rglob("*.png"))) == 3
        assert "visibility window" not in unetbg(lossy, tmp_path, "status", job_id).stderr
    finally:
        lossy.stop_worker()
        redis.stop()


def test_status_wait_and_wait_attach_to_jobs_others_submitted(
    cluster, broker_env, coco_mini, tmp_path, checkpoint
):
    # Issue 20, item 4: follow a job that was submitted without --wait, as --wait would.
    from unetbg import jobs

    copy_photos(coco_mini, tmp_path / "in", 2, offset=36)
    first = unetbg(cluster, tmp_path, "remove-dir", "in", "out", "--checkpoint", checkpoint)
    second = unetbg(cluster, tmp_path, "remove-dir", "in", "out2", "--checkpoint", checkpoint)
    first_id, second_id = first.stdout.strip(), second.stdout.strip()
    shown = unetbg(cluster, tmp_path, "status", first_id[:8], "--wait")
    assert shown.returncode == 0, shown.stderr + cluster.log_tail()
    assert f"{first_id}: succeeded 2/2 img" in shown.stderr  # --wait's plain progress lines
    assert any(line.split() == ["state", "succeeded"] for line in shown.stdout.splitlines())

    waited = unetbg(cluster, tmp_path, "wait", first_id, second_id, "--json")
    assert waited.returncode == 0, waited.stderr + cluster.log_tail()
    assert [(j["id"], j["state"]) for j in json.loads(waited.stdout)] == [
        (first_id, "succeeded"),
        (second_id, "succeeded"),
    ]
    # A cancelled job exits 1, as --wait does; an unknown id is refused before waiting.
    never = jobs.create_remove_dir_job(tmp_path / "in", tmp_path / "out3", str(checkpoint))
    jobs.cancel_job(never)
    cancelled = unetbg(cluster, tmp_path, "wait", never)
    assert cancelled.returncode == 1 and f"{never}: cancelled" in cancelled.stderr
    unknown = unetbg(cluster, tmp_path, "wait", second_id, "zz-no-such-job")
    assert unknown.returncode == 2 and "zz-no-such-job" in unknown.stderr
    assert f"{second_id}:" not in unknown.stderr  # nothing was waited for
