"""Submitting a very large folder (issue 23): how long ``unetbg remove-dir IN OUT`` takes
to record the job, how much memory the submitting process holds, and how soon the
first chunk is queued (and, with ``--worker``, the first image processed).

    .venv/bin/python benchmarks/bench_submit.py [--files 100000] [--done 0.0]
        [--database-url URL] [--worker] [--beside N]

A folder of ``--files`` hard links to one tiny real JPEG (planning reads names, never
pixels; 100 to a sub-folder) is submitted by the real command to a real Redis started
here, into a fresh SQLite file (or ``--database-url``, an empty database). Without
``--worker`` nothing runs the chunks: they stay queued. With ``--worker`` one real
Celery worker (prefork, concurrency 1, a random-weight model at letterbox size 64)
is started first and warmed up on a one-image job, so the figure is a warm worker's.
``--done`` is the share of the files whose output already exists (a re-run).
``--beside N``: once the measured job's first chunk is queued, a second ``remove-dir``
of ``N`` images is submitted on the same database by another process, embedded (no
broker: it runs its own images, with the same model), and waited for; its exit status,
time, state and item counts are reported ("another job on the same SQLite database
submits and runs" while a large one is recorded).
Measured: the command's wall time and CPU time (user + system: the figure to compare
on a shared machine), its peak RSS (``wait4``'s ``ru_maxrss`` of that one child), the
time from the command's start to the first chunk message in Redis's ``infer`` queue
and (``--worker``) to the first item processed (polled every 20 ms), the job's item
rows and counts. Run the "before" figures with ``PYTHONPATH`` pointing at an older
tree's ``src``.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import free_port

BIN = Path(sys.executable).parent
MAKE_CHECKPOINT = (
    "import sys; from _common import make_checkpoint; make_checkpoint(sys.argv[1], 64)"
)


#: A 16x16 grey JPEG: every input is a hard link to it.
TINY_JPEG = (
    "import sys; from PIL import Image; Image.new('RGB', (16, 16), (90, 90, 90))"
    ".save(sys.argv[1], quality=80)"
)


#: Hard links made to one copy of the JPEG.
LINKS_PER_FILE = 50_000


def make_folder(root: Path, files: int, done: float) -> tuple[Path, Path]:
    source, out = root / "in", root / "out"
    existing = int(files * done)
    seed = root / "seed.jpg"
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", TINY_JPEG, str(seed)], check=True)
    for n in range(files):
        folder = f"d{n // 100:05d}"
        (source / folder).mkdir(parents=True, exist_ok=True)
        if n % LINKS_PER_FILE == 0:  # a fresh copy: ext4 allows 65,000 links to a file
            shutil.copyfile(root / "seed.jpg", seed := root / f"seed{n}.jpg")
        os.link(seed, source / folder / f"p{n:07d}.jpg")
        if n < existing:
            (out / folder).mkdir(parents=True, exist_ok=True)
            (out / folder / f"p{n:07d}.png").touch()
    return source, out


class Firsts(threading.Thread):
    """Polls, from the command's start, for the first chunk queued in Redis and the
    first item processed (succeeded or failed) in the SQLite database."""

    def __init__(self, port: int, database: str, start: float) -> None:
        super().__init__(daemon=True)
        self.port, self.database, self.start_s = port, database, start
        self.queued_s: float | None = None
        self.processed_s: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        import redis

        client = redis.Redis(port=self.port)
        path = self.database.removeprefix("sqlite:///")
        while not self.stop.is_set() and (self.queued_s is None or self.processed_s is None):
            now = time.perf_counter() - self.start_s
            if self.queued_s is None and client.llen("infer"):
                self.queued_s = now
            if self.processed_s is None and path != self.database and self._processed(path):
                self.processed_s = now
            time.sleep(0.02)

    @staticmethod
    def _processed(path: str) -> bool:
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.05) as db:
                return bool(
                    db.execute(
                        "SELECT 1 FROM job_items WHERE state IN ('succeeded', 'failed') "
                        "AND job_id != ? LIMIT 1",
                        (WARM_JOB[0],),
                    ).fetchone()
                )
        except sqlite3.Error:
            return False


#: The warm-up job's id, once known (its items are not the measured job's).
WARM_JOB = [""]


def start_worker(env: dict, root: Path, model: Path) -> subprocess.Popen:
    """A real Celery worker, ready and warm: it ran a one-image job to the end."""
    log = open(root / "worker.log", "wb")  # noqa: SIM115 - open while the worker runs
    worker = subprocess.Popen(
        [str(BIN / "celery"), "-A", "unetbg.workers.app", "worker", "-Q", "infer,train"]
        + ["--pool", "prefork", "--concurrency", "1", "-l", "info", "--without-mingle"]
        + ["--without-gossip", "-n", f"bench-{os.getpid()}@%h"],
        env=env | {"OMP_NUM_THREADS": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    warm_in, _ = make_folder(root / "warm", 1, 0)
    done = subprocess.run(
        [str(BIN / "unetbg"), "remove-dir", str(warm_in), str(root / "warm" / "out")]
        + ["--checkpoint", str(model), "--wait", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        worker.terminate()
        sys.exit(f"warm-up failed: {done.stderr[-2000:]}")
    WARM_JOB[0] = json.loads(done.stdout)["id"]
    return worker


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    """Read the command's output, then reap it with ``wait4``: its own CPU time and peak
    RSS (``RUSAGE_CHILDREN`` would mix in the other children, the checkpoint maker's)."""
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, proc.usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return out, err


class Beside(threading.Thread):
    """A second, small job submitted and run (embedded) on the same database once the
    measured job's first chunk is queued."""

    def __init__(self, firsts: Firsts, env: dict, root: Path, model: Path, images: int):
        super().__init__(daemon=True)
        self.firsts, self.model = firsts, model
        self.env = {k: v for k, v in env.items() if k != "UNETBG_BROKER_URL"}
        self.source, self.out = make_folder(root / "beside", images, 0)
        self.result: dict = {}

    def run(self) -> None:
        while self.firsts.queued_s is None and not self.firsts.stop.is_set():
            time.sleep(0.05)
        start = time.perf_counter()
        done = subprocess.run(
            [str(BIN / "unetbg"), "remove-dir", str(self.source), str(self.out)]
            + ["--checkpoint", str(self.model), "--wait", "--json"],
            env=self.env,
            capture_output=True,
            text=True,
        )
        self.result = {
            "started_s": round(start - self.firsts.start_s, 2),
            "took_s": round(time.perf_counter() - start, 2),
            "exit_status": done.returncode,
        }
        if done.returncode == 0:
            job = json.loads(done.stdout)
            self.result |= {"state": job["state"], "items": job.get("items")}
        else:
            self.result["stderr"] = done.stderr[-500:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--done", type=float, default=0.0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--worker", action="store_true", help="a real worker takes the chunks")
    parser.add_argument(
        "--beside", type=int, default=0, help="images of a second job run meanwhile"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        root = Path(tmp)
        source, out = make_folder(root, args.files, args.done)
        model = root / "model.pth"
        # In a child: a parent that imported torch would pass its RSS on to the command
        # measured (a forked child's peak starts at its parent's).
        subprocess.run(
            [sys.executable, "-c", MAKE_CHECKPOINT, str(model)],
            cwd=Path(__file__).parent,
            check=True,
        )
        port = free_port()
        redis = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(port), "--save", "", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        database = args.database_url or f"sqlite:///{root / 'jobs.sqlite3'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")} | {
            "UNETBG_BROKER_URL": f"redis://127.0.0.1:{port}/0",
            "UNETBG_DATABASE_URL": database,
            "UNETBG_DATA_DIR": str(root / "data"),
        }
        worker = None
        try:
            subprocess.run([str(BIN / "unetbg"), "db", "upgrade"], env=env, check=True)
            if args.worker:
                worker = start_worker(env, root, model)
            argv = [str(BIN / "unetbg"), "remove-dir", str(source), str(out)]
            start = time.perf_counter()
            firsts = Firsts(port, database, start)
            firsts.start()
            beside = Beside(firsts, env, root, model, args.beside) if args.beside else None
            if beside is not None:
                beside.start()
            proc = subprocess.Popen(
                [*argv, "--checkpoint", str(model), "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            stdout, stderr = _finish(proc)
            seconds = time.perf_counter() - start
            cpu = proc.usage.ru_utime + proc.usage.ru_stime
            peak = proc.usage.ru_maxrss / 1024
            firsts.join(timeout=120 if args.worker else 1)
            firsts.stop.set()
            if beside is not None:
                beside.join()
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=60)
            redis.terminate()
            redis.wait()
        if proc.returncode != 0:
            sys.exit(f"remove-dir failed ({proc.returncode}): {stderr[-2000:]}")
        job = json.loads(stdout)
        rows = None
        if database.startswith("sqlite:///"):
            with sqlite3.connect(database.removeprefix("sqlite:///")) as db:
                rows = db.execute(
                    "SELECT count(*) FROM job_items WHERE job_id = ?", (job["id"],)
                ).fetchone()[0]
        print(
            json.dumps(
                {
                    "files": args.files,
                    "done": args.done,
                    "submit_s": round(seconds, 2),
                    "cpu_s": round(cpu, 2),
                    "peak_rss_mb": round(peak),
                    "first_chunk_queued_s": firsts.queued_s and round(firsts.queued_s, 2),
                    "first_image_processed_s": firsts.processed_s and round(firsts.processed_s, 2),
                    "item_rows": rows,
                    "items": job.get("items"),
                    "beside": beside.result if beside is not None else None,
                    "python_path": os.environ.get("PYTHONPATH"),
                }
            )
        )


if __name__ == "__main__":
    main()
