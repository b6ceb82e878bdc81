"""Security: JSON-only task messages, weights_only checkpoints, outputs confined to
OUTPUT, input links not followed unless asked, and the compose Redis password.

The docker-compose checks that only read the file (published ports, Flower's refusal
to start without a login) are in tests/test_deployment.py; Flower's 401 without the
login is shown against a live Flower in tests/jobs/test_celery.py.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import uuid
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from inference_fixtures import write_photo
from service_fixtures import REPO, VENV_BIN, free_port, redis_executable, wait_until
from unetbg import jobs
from unetbg.cli import main
from unetbg.inference import ModelInference
from unetbg.model import CheckpointError

pytestmark = pytest.mark.services


class _Payload:
    """Unpickling this creates the folder ``path``: stands for arbitrary code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_worker_refuses_a_pickled_task_message(shared_env, tmp_path):
    from kombu import Connection, Exchange, Queue

    marker = tmp_path / "pwned-by-task"
    task_id = f"pickle-{uuid.uuid4().hex[:8]}"
    headers = {
        "lang": "py",
        "task": "unetbg.remove_chunk",
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "argsrepr": "(payload)",
        "kwargsrepr": "{}",
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
    }
    # Celery's protocol 2 body: (args, kwargs, embed), here serialised with pickle.
    body = ((_Payload(marker), []), {}, {"callbacks": None, "errbacks": None, "chain": None})
    with Connection(shared_env.env["UNETBG_BROKER_URL"]) as connection:
        producer = connection.Producer(serializer="pickle")
        producer.publish(
            body,
            exchange=Exchange("infer", type="direct"),
            routing_key="infer",
            headers=headers,
            correlation_id=task_id,
            declare=[Queue("infer", Exchange("infer", type="direct"), routing_key="infer")],
        )
    wait_until(
        lambda: (
            "Refusing to deserialize untrusted content of type pickle" in shared_env.log_tail(400)
        ),
        60,
        "the worker to refuse the pickled message",
    )
    assert not marker.exists()
    assert shared_env.worker.poll() is None  # and it goes on serving

    # Control: the same payload, unpickled, does run (so its absence above means refusal).
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.is_dir()


@pytest.fixture
def evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A torch.save file whose unpickling would create ``marker``."""
    marker = tmp_path / "pwned-by-checkpoint"
    path = tmp_path / "evil.pth"
    torch.save({"format_version": 1, "payload": _Payload(marker)}, path)
    return path, marker


def test_malicious_checkpoint_through_model_inference(evil_checkpoint):
    path, marker = evil_checkpoint
    with pytest.raises(CheckpointError, match="contains unsafe pickled objects") as err:
        ModelInference(path, device="cpu")
    assert str(path) in str(err.value) and "posix.mkdir" in str(err.value)
    assert not marker.exists()


def test_malicious_checkpoint_through_remove_dir_cli(shared_env, evil_checkpoint, tmp_path):
    path, marker = evil_checkpoint
    inp = tmp_path / "in"
    write_photo(inp / "a.jpg")
    write_photo(inp / "b.png")
    done = subprocess.run(
        [str(VENV_BIN / "unetbg"), "remove-dir", inp, tmp_path / "out", "--checkpoint", path],
        env=shared_env.cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "contains unsafe pickled objects" in done.stderr and str(path) in done.stderr
    assert done.stdout == ""  # no job was recorded or queued
    assert all(j.params.get("checkpoint") != str(path) for j in jobs.list_jobs(limit=1000))
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_outputs_cannot_escape_output_folder(shared_env, tmp_path, checkpoint):
    inp, out = tmp_path / "in", tmp_path / "out"
    elsewhere, later = tmp_path / "elsewhere", tmp_path / "later"
    for name in ("pre", "post", "fine"):
        write_photo(inp / name / "p.jpg")
    elsewhere.mkdir()
    later.mkdir()
    out.mkdir()
    (out / "pre").symlink_to(elsewhere, target_is_directory=True)  # there before planning
    job_id = jobs.create_remove_dir_job(inp, out, str(checkpoint))
    (out / "post").symlink_to(later, target_is_directory=True)  # planted after planning
    jobs.dispatch(job_id)
    job = jobs.wait_for_job(job_id, poll_s=0.3, timeout_s=120)
    items = {Path(i.source_path).parent.name: i for i in jobs.list_items(job_id)}
    assert items["pre"].state == "skipped"
    assert "output would be written outside the output folder" in items["pre"].error
    assert items["post"].state == "failed"
    assert "refusing to write outside the output folder" in items["post"].error
    assert items["fine"].state == "succeeded" and job.state == "partial"
    assert list(elsewhere.iterdir()) == [] and list(later.iterdir()) == []


def test_input_links_outside_are_followed_only_when_asked(embedded_env, tmp_path, checkpoint):
    inp, outside = tmp_path / "in", tmp_path / "outside"
    write_photo(inp / "inside.jpg")
    write_photo(outside / "linked.jpg", 50, 40)
    (inp / "linked.jpg").symlink_to(outside / "linked.jpg")
    original = (outside / "linked.jpg").read_bytes()

    def run(out: Path, *flags: str) -> set[str]:
        args = ["remove-dir", inp, out, "--checkpoint", checkpoint, *flags]
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return {p.name for p in out.iterdir()}

    assert run(tmp_path / "default") == {"inside.png"}
    assert run(tmp_path / "followed", "--follow-symlinks") == {"inside.png", "linked.png"}
    with Image.open(tmp_path / "followed" / "linked.png") as result:
        assert result.size == (50, 40)
    assert (outside / "linked.jpg").read_bytes() == original
    assert sorted(p.name for p in outside.iterdir()) == ["linked.jpg"]


def test_compose_redis_refuses_clients_without_the_password(tmp_path):
    """Run docker-compose.yml's own Redis start line against the real redis-server."""
    import redis

    real = redis_executable()
    service = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["redis"]
    assert service["command"][:2] == ["sh", "-c"]
    script = service["command"][2].replace("$$", "$")  # compose's escaping
    port = free_port()
    # A redis-server on PATH that keeps the compose arguments and only moves the
    # server to a free loopback port and a scratch folder (later options win).
    shim = tmp_path / "bin" / "redis-server"
    shim.parent.mkdir()
    shim.write_text(
        f'#!/bin/sh\nexec {real} "$@" --port {port} --bind 127.0.0.1 --dir {tmp_path}\n'
    )
    shim.chmod(0o755)
    env = {"PATH": f"{shim.parent}:/usr/bin:/bin", "REDIS_PASSWORD": "s3cret-for-test"}
    server = subprocess.Popen(
        ["sh", "-c", script], env=env, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        anonymous = redis.Redis(port=port, socket_connect_timeout=2)
        authed = redis.Redis(port=port, password="s3cret-for-test", socket_connect_timeout=2)

        def up() -> bool:
            try:
                return bool(authed.ping())
            except redis.ConnectionError:
                return False

        wait_until(up, 20, "the compose Redis to answer")
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        with pytest.raises(redis.AuthenticationError):
            anonymous.lpush("infer", b"x")
        assert authed.config_get("appendonly") == {"appendonly": "yes"}
        # The broker URL the compose file gives every worker carries the password.
        from unetbg.settings import get_settings
        from unetbg.workers.app import create_app

        url = f"redis://:s3cret-for-test@127.0.0.1:{port}/0"
        app = create_app(get_settings({"UNETBG_BROKER_URL": url}), set_as_current=False)
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
    finally:
        server.terminate()
        server.wait(10)
