"""Real services shared by the job and reliability tests: Redis, Celery workers, the
SQLite job database, real COCO photos and a real (random-weight) checkpoint.

Import the fixtures into a folder's ``conftest.py`` (``from service_fixtures import
cluster, ...``). The checkpoint's predictions carry no meaning: tests check what the job
machinery does (states, sizes, files, records), never what a trained model would find.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from prerequisites import unavailable

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
IMAGE_SIZE = 64
#: Overrides that make the smoke preset a few seconds long for training-job tests.
SMOKE_TRAINING = {
    "epochs": 1,
    "max_steps_per_epoch": 2,
    "image_size": IMAGE_SIZE,
    "batch_size": 2,
    "val_limit": 4,
    "device": "cpu",
    "num_workers": 0,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: How long a server, worker or watch process may take to come up. An upper bound, not a
#: wait: on a loaded 2-core machine `unetbg serve` has taken 130 s to import its stack.
STARTUP_S = 240.0


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


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid``, read from /proc (a prefork worker's pool processes)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # Field 4 is the parent pid; the command name (field 2) may contain spaces.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            children.append(int(entry.name))
    return sorted(children)


def clear_unetbg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("UNETBG_"):
            monkeypatch.delenv(name)


def make_checkpoint(path: Path, image_size: int = IMAGE_SIZE) -> Path:
    """Write a real checkpoint of a small randomly initialised model to ``path``."""
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
        Preprocessing(image_size=image_size),
        epoch=1,
        metrics={"iou": 0.25, "dice": 0.4, "loss": 1.0, "pixel_accuracy": 0.6},
    )
    return save_checkpoint(path, state)


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


class RedisServer:
    """A real redis-server on a loopback port; restartable.

    ``persist=True`` runs it as docker-compose.yml does (``appendonly yes``), so queued
    messages survive a restart; otherwise it restarts empty.
    """

    def __init__(self, executable: str, folder: Path, persist: bool = False) -> None:
        self.executable, self.folder, self.persist = executable, folder, persist
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        args = [self.executable, "--bind", "127.0.0.1", "--port", str(self.port)]
        args += ["--dir", str(self.folder), "--save", ""]
        args += ["--appendonly", "yes" if self.persist else "no"]
        with open(self.folder / "redis.log", "ab") as log:  # Popen keeps its own fd
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
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


def redis_executable() -> str:
    """Path of ``redis-server``; the test is unavailable (skip, or fail under CI) without it."""
    executable = shutil.which("redis-server")
    if executable is None:
        unavailable("redis-server is not installed (scripts/services.sh install)")
    return executable


def start_redis(folder: Path, persist: bool = False) -> RedisServer:
    """Start a redis-server in ``folder`` (see ``redis_executable`` when it is missing)."""
    server = RedisServer(redis_executable(), folder, persist)
    server.start()
    return server


class Worker:
    """One ``celery worker`` process (prefork) and its log file."""

    def __init__(self, proc: subprocess.Popen, log: Path, name: str) -> None:
        self.proc, self.log, self.name = proc, log, name

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def pool_pids(self) -> list[int]:
        """The prefork pool processes (children of the main process)."""
        return child_pids(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None


class Cluster:
    """The environment a broker-mode test and its workers share.

    ``worker`` / ``worker_log`` are the most recently started worker; ``workers`` all
    of them. ``env`` (``UNETBG_*``) is what both the test process and workers see.
    """

    def __init__(self, root: Path, redis_url: str, **env: str) -> None:
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
        } | env
        self.workers: list[Worker] = []
        self.worker: subprocess.Popen | None = None
        self.redis: RedisServer | None = None
        self.worker_log = root / "worker.log"

    def start_worker(
        self,
        queues: str = "train,infer",
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        name: str | None = None,
        wrap: Callable[[list[str]], list[str]] | None = None,
    ) -> Worker:
        """Start a prefork worker and wait for it to log ``ready.``; ``env`` adds variables,
        ``wrap`` turns the worker's argv into the one to run (on another host, say)."""
        name = name or f"test-{len(self.workers)}-{os.getpid()}"
        log_path = self.root / ("worker.log" if not self.workers else f"{name}.log")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
        full_env |= self.env | {"OMP_NUM_THREADS": "1"} | (env or {})
        argv = [str(VENV_BIN / "celery"), "-A", "unetbg.workers.app", "worker", "-Q", queues]
        argv += ["--pool", "prefork", "--concurrency", str(concurrency), "-l", "info"]
        argv += ["-n", f"{name}@%h", "--without-mingle", "--without-gossip"]
        argv = wrap(argv) if wrap else argv
        start = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(proc, log_path, name)

        def ready() -> bool:
            with open(log_path, "rb") as fh:
                fh.seek(start)
                return proc.poll() is not None or b" ready." in fh.read()

        wait_until(ready, STARTUP_S, "the Celery worker to log 'ready.'")
        assert proc.poll() is None, worker.text()[-4000:]
        self.workers.append(worker)
        self.worker, self.worker_log = proc, log_path
        return worker

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` of every worker's log."""
        logs = [w.log for w in self.workers] or [self.worker_log]
        texts = [p.read_text(errors="replace") if p.exists() else "" for p in logs]
        return "\n----\n".join("\n".join(t.splitlines()[-lines:]) for t in texts)

    def stop_worker(self) -> None:
        """Stop every worker of this cluster."""
        for worker in self.workers:
            stop_process(worker.proc, timeout=20)
        self.workers.clear()
        self.worker = None

    def cli_env(self, **extra: str) -> dict[str, str]:
        """Environment for running the ``unetbg`` CLI as a subprocess against this cluster."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
        return env | self.env | extra


def make_cluster(root: Path, redis: RedisServer, **env: str) -> Cluster:
    """A cluster on ``redis`` with a migrated SQLite database (no worker yet)."""
    from unetbg.db import schema

    cluster = Cluster(root, redis.url, **env)
    cluster.redis = redis
    schema.upgrade(cluster.database_url)
    return cluster


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture
def embedded_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No broker; the embedded SQLite file lives in a fresh data dir (returned)."""
    clear_unetbg_env(monkeypatch)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("UNETBG_DATA_DIR", str(data_dir))
    return data_dir


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint file of a randomly initialised model at letterbox size 64."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pth")


@pytest.fixture
def photos(coco_mini: Path, tmp_path: Path) -> Path:
    """A folder of 5 real COCO photos (one in a sub-folder)."""
    folder = tmp_path / "photos"
    copy_photos(coco_mini, folder, 5)
    return folder


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A migrated SQLite job database and one prefork Celery worker (concurrency 1)."""
    cluster = make_cluster(tmp_path_factory.mktemp("cluster"), redis_server)
    cluster.start_worker()
    yield cluster
    cluster.stop_worker()


def use_cluster(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """Point this test process at ``cluster``'s broker and database."""
    clear_unetbg_env(monkeypatch)
    for key, value in cluster.env.items():
        monkeypatch.setenv(key, value)
    return cluster


@pytest.fixture
def broker_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """This test process talks to the cluster's broker and database."""
    return use_cluster(cluster, monkeypatch)


POSTGRES_ADMIN_URL = os.environ.get(
    "UNETBG_TEST_POSTGRES_URL", "postgresql+psycopg://unetbg:unetbg@127.0.0.1:5432/postgres"
)


def postgres_admin_engine():
    """An AUTOCOMMIT engine on the test server's maintenance database (see
    ``prerequisites.unavailable`` when the server cannot be reached)."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from unetbg.settings import mask_url

    engine = create_engine(
        POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        engine.connect().close()
    except OperationalError as exc:
        engine.dispose()
        unavailable(
            f"PostgreSQL at {mask_url(POSTGRES_ADMIN_URL)} is unreachable: {exc.orig} "
            "(set UNETBG_TEST_POSTGRES_URL or start it: scripts/services.sh start)"
        )
    return engine


@contextmanager
def scratch_postgres_database(admin, prefix: str = "unetbg_test") -> Iterator[str]:
    """URL of a new, empty database on ``admin``'s server, dropped afterwards."""
    import uuid

    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from unetbg.db.session import get_engine

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def make_carded_checkpoint(path: Path, scores: dict[str, float]) -> Path:
    """A real checkpoint whose card records validation IoU ``scores`` per set, as the
    shipped default model's card does (``card["evaluation"]["sources"]``)."""
    import torch

    make_checkpoint(path)
    state = torch.load(path, weights_only=True)
    state["card"] = {
        "data": [{"name": name} for name in scores],
        "evaluation": {"sources": {name: {"iou": iou} for name, iou in scores.items()}},
    }
    torch.save(state, path)
    return path
