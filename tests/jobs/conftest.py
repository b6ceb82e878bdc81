"""Real services for the job tests: Redis, a Celery worker, the SQLite job database,
real COCO photos and a real (random-weight) checkpoint.

The checkpoint's predictions carry no meaning: tests check what the job machinery
does (states, sizes, files, records), never what a trained model would find.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
IMAGE_SIZE = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM our own process group, then SIGKILL it if it does not go."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _clear_unetbg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("UNETBG_"):
            monkeypatch.delenv(name)


@pytest.fixture
def embedded_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No broker; the embedded SQLite file lives in a fresh data dir (returned)."""
    _clear_unetbg_env(monkeypatch)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("UNETBG_DATA_DIR", str(data_dir))
    return data_dir


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint file of a randomly initialised model at letterbox size 64."""
    import torch

    from unetbg.model import (
        ModelConfig,
        Preprocessing,
        build_checkpoint,
        create_model,
        save_checkpoint,
    )

    torch.manual_seed(0)
    config = ModelConfig(decoder_channels=(32, 16, 16, 8, 8))
    state = build_checkpoint(
        create_model(config),
        config,
        Preprocessing(image_size=IMAGE_SIZE),
        epoch=1,
        metrics={"iou": 0.25, "dice": 0.4, "loss": 1.0, "pixel_accuracy": 0.6},
    )
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    save_checkpoint(path, state)
    return path


def copy_photos(coco_mini: Path, dest: Path, count: int, offset: int = 0) -> list[Path]:
    """Copy ``count`` real COCO val JPEGs into ``dest`` (every third one in ``sub/``)."""
    sources = sorted((coco_mini / "val2017").glob("*.jpg"))[offset : offset + count]
    out = []
    for i, source in enumerate(sources):
        target = dest / ("sub" if i % 3 == 2 else "") / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        out.append(target)
    return out


@pytest.fixture
def photos(coco_mini: Path, tmp_path: Path) -> Path:
    """A folder of 5 real COCO photos (one in a sub-folder)."""
    folder = tmp_path / "photos"
    copy_photos(coco_mini, folder, 5)
    return folder


class RedisServer:
    """A real redis-server on a loopback port, without persistence; restartable."""

    def __init__(self, executable: str, folder: Path) -> None:
        self.executable, self.folder = executable, folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        with open(self.folder / "redis.log", "ab") as log:  # Popen keeps its own fd
            self.proc = subprocess.Popen(
                [
                    self.executable,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.folder),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        client = redis.Redis.from_url(self.url)

        def ping() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_until(ping, 15, "redis-server to answer PING")
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed (scripts/services.sh install)")
    server = RedisServer(executable, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


class Cluster:
    """The environment a broker-mode test and its worker share."""

    def __init__(self, root: Path, redis_url: str) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.database_url = f"sqlite:///{root / 'jobs.sqlite3'}"
        self.env = {
            "UNETBG_BROKER_URL": redis_url,
            "UNETBG_DATABASE_URL": self.database_url,
            "UNETBG_DATA_DIR": str(self.data_dir),
            # Short, so the lost-worker and takeover paths are reachable in a test.
            "UNETBG_HEARTBEAT_TIMEOUT": "30",
            "UNETBG_CHUNK_SIZE": "2",
        }
        self.worker: subprocess.Popen | None = None
        self.redis: RedisServer | None = None
        self.worker_log = root / "worker.log"

    def start_worker(self, queues: str = "train,infer", concurrency: int = 1) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
        env |= self.env | {"OMP_NUM_THREADS": "1"}
        with open(self.worker_log, "ab") as log:
            self.worker = subprocess.Popen(
                [
                    str(VENV_BIN / "celery"),
                    "-A",
                    "unetbg.workers.app",
                    "worker",
                    "-Q",
                    queues,
                    "--pool",
                    "prefork",
                    "--concurrency",
                    str(concurrency),
                    "-l",
                    "info",
                    "-n",
                    f"test-{os.getpid()}@%h",
                    "--without-mingle",
                    "--without-gossip",
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(
            lambda: self.worker.poll() is not None or b" ready." in self.worker_log.read_bytes(),
            60,
            "the Celery worker to log 'ready.'",
        )
        assert self.worker.poll() is None, self.log_tail()

    def log_tail(self, lines: int = 60) -> str:
        text = self.worker_log.read_text(errors="replace") if self.worker_log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop_worker(self) -> None:
        if self.worker is not None:
            stop_process(self.worker, timeout=20)
            self.worker = None


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A migrated SQLite job database and one prefork Celery worker (concurrency 1)."""
    from unetbg.db import schema

    cluster = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url)
    cluster.redis = redis_server
    schema.upgrade(cluster.database_url)
    cluster.start_worker()
    yield cluster
    cluster.stop_worker()


@pytest.fixture
def broker_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """This test process talks to the cluster's broker and database."""
    _clear_unetbg_env(monkeypatch)
    for key, value in cluster.env.items():
        monkeypatch.setenv(key, value)
    return cluster
