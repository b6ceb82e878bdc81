"""Load: 1,000 small images through ``unetbg remove-dir`` on two worker processes.

    .venv/bin/python benchmarks/bench_load.py [--images 1000] [--size 160x120]
        [--image-size 128] [--chunk-size 16] [--batch-size 8] [--workers 2] [--keep]

Everything is real and started here: a private redis-server on a free loopback port,
a SQLite job database in a temporary folder, ``--workers`` Celery worker processes
(one prefork pool process each, consuming the ``infer`` queue), generated JPEGs
(``--size``, a person photo from scikit-image with a different crop and tint each) and
a checkpoint of the full-size model (random weights: throughput does not depend on
them) at letterbox ``--image-size``. The job is submitted with the real CLI
(``unetbg remove-dir --wait --json``).

Time is measured from the submission to the job's end, and includes loading the
model in each pool process (printed separately as the time to the first finished
image). Prints the throughput and the database's final counts as JSON (stdout) and a
short summary (stderr). Not a test: nothing is asserted beyond the job finishing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import free_port, make_checkpoint

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.2)


def make_inputs(folder: Path, count: int, width: int, height: int) -> None:
    """``count`` distinct JPEGs of a real person photo (crop and tint vary)."""
    import numpy as np
    from PIL import Image
    from skimage.data import astronaut

    photo = astronaut()
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        top, left = rng.integers(0, 160, size=2)
        crop = photo[top : top + 352, left : left + 352].astype(np.float32)
        tinted = np.clip(crop * rng.uniform(0.8, 1.2, size=3), 0, 255).astype(np.uint8)
        image = Image.fromarray(tinted).resize((width, height), Image.Resampling.BILINEAR)
        # A few sub-folders, as real photo folders have.
        target = folder / f"set{i % 10}" / f"img{i:05d}.jpg"
        target.parent.mkdir(exist_ok=True)
        image.save(target, quality=90)


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    import redis

    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server is not installed (scripts/services.sh install)")
    port = free_port()
    log = open(folder / "redis.log", "wb")  # noqa: SIM115 (lives as long as the server)
    proc = subprocess.Popen(
        [executable, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
        + ["--save", "", "--appendonly", "no"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_for(up, 15, "redis-server")
    return proc, url


def start_worker(env: dict[str, str], log_path: Path, name: str) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 (lives as long as the worker)
    proc = subprocess.Popen(
        [str(BIN / "celery"), "-A", "unetbg.workers.app", "worker", "-Q", "infer"]
        + ["--pool", "prefork", "--concurrency", "1", "-l", "info", "-n", f"{name}@%h"]
        + ["--without-mingle", "--without-gossip"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for(lambda: b" ready." in log_path.read_bytes() or proc.poll() is not None, 90, name)
    if proc.poll() is not None:
        sys.exit(f"worker {name} died:\n{log_path.read_text()[-3000:]}")
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", default="160x120", help="input JPEG size, WxH")
    parser.add_argument("--image-size", type=int, default=128, help="model letterbox size")
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    root = Path(tempfile.mkdtemp(prefix="unetbg-load-"))
    procs: list[subprocess.Popen] = []
    try:
        t0 = time.perf_counter()
        make_inputs(root / "in", args.images, width, height)
        make_checkpoint(root / "model.pth", args.image_size)
        prepare_s = time.perf_counter() - t0
        redis_proc, url = start_redis(root)
        procs.append(redis_proc)
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
        env |= {
            "UNETBG_BROKER_URL": url,
            "UNETBG_DATABASE_URL": f"sqlite:///{root / 'jobs.sqlite3'}",
            "UNETBG_DATA_DIR": str(root / "data"),
            # Each worker process gets one core's worth of threads: two share the machine.
            "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // args.workers)),
        }
        from unetbg.db import schema

        schema.upgrade(env["UNETBG_DATABASE_URL"])
        for i in range(args.workers):
            procs.append(start_worker(env, root / f"worker{i}.log", f"load{i}"))

        t0 = time.perf_counter()
        done = subprocess.run(
            [str(BIN / "unetbg"), "remove-dir", str(root / "in"), str(root / "out")]
            + ["--checkpoint", str(root / "model.pth"), "--device", "cpu", "--wait", "--json"]
            + ["--chunk-size", str(args.chunk_size), "--batch-size", str(args.batch_size)],
            env=env,
            capture_output=True,
            text=True,
        )
        wall_s = time.perf_counter() - t0
        if not done.stdout:
            sys.exit(f"remove-dir failed:\n{done.stderr[-3000:]}")
        job_id, payload = done.stdout.split("\n", 1)
        job = json.loads(payload)

        # The database's own account, read after the job ended.
        os.environ.update({k: v for k, v in env.items() if k.startswith("UNETBG_")})
        from unetbg import jobs

        items = jobs.list_items(job_id)
        durations = sorted(i.duration_s for i in items if i.duration_s is not None)
        written = sum(1 for p in (root / "out").rglob("*.png"))
        started = job["started_at"]
        result = {
            "images": args.images,
            "input_size": f"{width}x{height}",
            "model_image_size": args.image_size,
            "workers": args.workers,
            "chunk_size": args.chunk_size,
            "batch_size": args.batch_size,
            "exit_status": done.returncode,
            "state": job["state"],
            "db_item_counts": job["items"],
            "db_progress": f"{job['progress_done']}/{job['progress_total']}",
            "outputs_written": written,
            "wall_s": round(wall_s, 2),
            "images_per_s": round(args.images / wall_s, 2),
            "job_run_s": round(job["seconds"], 2) if job["seconds"] else None,
            "images_per_s_job_run": round(args.images / job["seconds"], 2)
            if job["seconds"]
            else None,
            "item_seconds_median": round(durations[len(durations) // 2], 4) if durations else None,
            "started_at": started,
            "prepare_s": round(prepare_s, 1),
            "cpu_count": os.cpu_count(),
        }
        print(json.dumps(result, indent=2))
        print(
            f"{args.images} images, {args.workers} workers: {result['images_per_s']} images/s "
            f"({wall_s:.1f} s from submission), job {job['state']}, items {job['items']}, "
            f"{written} outputs",
            file=sys.stderr,
        )
    finally:
        for proc in reversed(procs):
            stop(proc)
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
