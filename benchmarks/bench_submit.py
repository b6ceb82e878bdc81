"""Submitting a very large folder (issue 23): how long ``unetbg remove-dir IN OUT`` takes
to record the job and how much memory the submitting process holds.

    .venv/bin/python benchmarks/bench_submit.py [--files 100000] [--done 0.0]
        [--database-url URL]

A folder of ``--files`` empty ``.jpg`` files (planning reads names, never pixels; 100
to a sub-folder) is submitted by the real command to a real Redis started here (no
worker: the chunks stay queued), into a fresh SQLite file (or ``--database-url``, an
empty database). ``--done`` is the share of the files whose output already exists (a
re-run). Measured: the command's wall time and CPU time (user + system: the figure to
compare on a shared machine), its peak RSS (``wait4``'s ``ru_maxrss`` of that one
child), the job's item rows and counts. Run the "before" figures with
``PYTHONPATH`` pointing at an older tree's ``src``.

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
import time
from pathlib import Path

from _common import free_port

BIN = Path(sys.executable).parent
MAKE_CHECKPOINT = (
    "import sys; from _common import make_checkpoint; make_checkpoint(sys.argv[1], 64)"
)


def make_folder(root: Path, files: int, done: float) -> tuple[Path, Path]:
    source, out = root / "in", root / "out"
    existing = int(files * done)
    for n in range(files):
        folder = f"d{n // 100:05d}"
        (source / folder).mkdir(parents=True, exist_ok=True)
        (source / folder / f"p{n:07d}.jpg").touch()
        if n < existing:
            (out / folder).mkdir(parents=True, exist_ok=True)
            (out / folder / f"p{n:07d}.png").touch()
    return source, out


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    """Read the command's output, then reap it with ``wait4``: its own CPU time and peak
    RSS (``RUSAGE_CHILDREN`` would mix in the other children, the checkpoint maker's)."""
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, proc.usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return out, err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--done", type=float, default=0.0)
    parser.add_argument("--database-url", default=None)
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
        try:
            subprocess.run([str(BIN / "unetbg"), "db", "upgrade"], env=env, check=True)
            argv = [str(BIN / "unetbg"), "remove-dir", str(source), str(out)]
            start = time.perf_counter()
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
        finally:
            redis.terminate()
            redis.wait()
        if proc.returncode != 0:
            sys.exit(f"remove-dir failed ({proc.returncode}): {stderr[-2000:]}")
        job = json.loads(stdout)
        rows = None
        if database.startswith("sqlite:///"):
            with sqlite3.connect(database.removeprefix("sqlite:///")) as db:
                rows = db.execute("SELECT count(*) FROM job_items").fetchone()[0]
        print(
            json.dumps(
                {
                    "files": args.files,
                    "done": args.done,
                    "submit_s": round(seconds, 2),
                    "cpu_s": round(cpu, 2),
                    "peak_rss_mb": round(peak),
                    "item_rows": rows,
                    "items": job.get("items"),
                    "python_path": os.environ.get("PYTHONPATH"),
                }
            )
        )


if __name__ == "__main__":
    main()
