"""How unetbg behaves with very large jobs (issue 23). Rows so far: item pages, watch.

    .venv/bin/python benchmarks/bench_scale.py [--items 100000] [--page 100]
        [--database-url URL] [--repeat 5] [--no-api] [--whole]
    .venv/bin/python benchmarks/bench_scale.py --watch [--existing 1000 100000] [--new 10]

Item pages: a remove-dir job of ``--items`` items (1 in 50 failed, 1 in 500 showing no
person) is recorded straight through the jobs layer's tables, in bulk (planning a real
folder of that size is another row's subject), in a fresh SQLite file under a temporary
data dir, or in ``--database-url`` (an empty PostgreSQL database, say). Then one page of
``--page`` items is timed (median of ``--repeat``) at the start, the middle and the end
of the job, for each state filter, through ``unetbg.jobs.item_page``; and, unless
``--no-api``, through a real ``unetbg serve`` on loopback (``GET /api/jobs/ID/items``,
with its key), which adds HTTP and JSON to the same query. ``--whole`` also times
``GET /api/jobs/ID?items=all``, the one-answer form, for comparison.

Watch (``--watch``, instead of item pages): for each ``--existing`` count, a folder of
that many images whose outputs already exist (empty files: skipped as existing, never
read) is watched by a real ``unetbg remove-dir IN OUT --watch`` in embedded mode (default
settle period, a random-weight model at letterbox size 64); after one warm-up image (the
model's load), ``--new`` small JPEGs are written into the folder one after the other, and
each is timed from its file's close to its output's appearance (outputs are renamed into
place, so one that exists is complete).

Prints one JSON object (and a table on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import free_port, make_checkpoint

BIN = Path(sys.executable).parent
JOB_ID = "scale0000001"
#: Rows per INSERT batch: each commits quickly, as a large submission's would.
BATCH = 10_000


def record_job(settings, count: int) -> None:
    """A finished remove-dir job of ``count`` items, some failed, a few without a person."""
    from sqlalchemy import insert

    from unetbg.db import Job, JobItem, upgrade
    from unetbg.jobs import db_session

    upgrade(settings.database_url)
    with db_session(settings) as session:
        session.add(Job(id=JOB_ID, kind="remove_dir", state="partial", progress_total=count))
    for start in range(0, count, BATCH):
        rows = [_item(n) for n in range(start, min(count, start + BATCH))]
        with db_session(settings) as session:
            session.execute(insert(JobItem), rows)


def _item(n: int) -> dict:
    failed = n % 50 == 0
    return {
        "job_id": JOB_ID,
        "source_path": f"/photos/in/{n:07d}.jpg",
        "output_path": None if failed else f"/photos/out/{n:07d}.png",
        "state": "failed" if failed else "succeeded",
        "error": "cannot identify image file" if failed else None,
        "duration_s": None if failed else 0.11,
        "chunk": n // 16,
        "attempts": 1,
        "person_share": None if failed else (0.0 if n % 500 == 1 else 0.3),
    }


def median_s(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cursors(settings, count: int) -> dict[str, int | None]:
    """Where the timed pages start: the first item, the middle one, the last page's."""
    from sqlalchemy import func, select

    from unetbg.db import JobItem
    from unetbg.jobs import db_session

    with db_session(settings) as session:
        first = session.scalar(select(func.min(JobItem.id)).where(JobItem.job_id == JOB_ID))
    return {"start": None, "middle": first + count // 2, "end": first + count - 50}


def time_queries(settings, count: int, page: int, repeat: int) -> dict[str, float]:
    from unetbg import jobs

    out = {}
    for where, cursor in cursors(settings, count).items():
        for state in jobs.ITEM_CHOICES:
            request = jobs.ItemPageRequest(JOB_ID, state, page, cursor)
            out[f"query {state} at {where}"] = median_s(
                lambda r=request: jobs.item_page(r, settings), repeat
            )
    return out


def time_api(env: dict, settings, count: int, page: int, repeat: int, whole: bool) -> dict:
    import httpx

    port = free_port()
    log = open(Path(env["UNETBG_DATA_DIR"]) / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(BIN / "unetbg"), "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        key = (Path(env["UNETBG_DATA_DIR"]) / "api-key").read_text().strip()
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
        out = {}
        path = f"/api/jobs/{JOB_ID}/items"
        for where, cursor in cursors(settings, count).items():
            params = {"limit": page} | ({} if cursor is None else {"cursor": cursor})
            assert len(client.get(path, params=params).json()["items"]) > 0
            out[f"api all at {where}"] = median_s(
                lambda p=params: client.get(path, params=p), repeat
            )
        if whole:
            answer = client.get(f"/api/jobs/{JOB_ID}", params={"items": "all"})
            out["api ?items=all (whole, one answer) bytes"] = len(answer.content)
            out["api ?items=all (whole, one answer)"] = median_s(
                lambda: client.get(f"/api/jobs/{JOB_ID}", params={"items": "all"}), 1
            )
        return out
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"unetbg serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    sys.exit(f"unetbg serve did not answer within {timeout} s")


def time_watch(tmp: Path, env: dict, existing: int, new: int) -> dict[str, float]:
    """New file -> output latencies of a watch over ``existing`` finished images."""
    folder = tmp / f"watch-{existing}"
    source, out = folder / "in", folder / "out"
    source.mkdir(parents=True)
    out.mkdir()
    for n in range(existing):
        (source / f"e{n:07d}.jpg").touch()
        (out / f"e{n:07d}.png").touch()
    model = tmp / "model.pth"
    if not model.exists():
        make_checkpoint(model, image_size=64)
    env = env | {"UNETBG_DATA_DIR": str(folder / "data")}
    argv = [str(BIN / "unetbg"), "remove-dir", str(source), str(out), "--checkpoint", str(model)]
    log = open(folder / "watch.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*argv, "--watch"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        _wait_for(lambda: b"watching " in (folder / "watch.log").read_bytes(), proc, "watching")
        photo = _small_jpeg()
        times = [
            _one_new_file(source / f"new{k:03d}.jpg", out, photo, proc) for k in range(new + 1)
        ]
        latencies = times[1:]  # the first one loads the model
        return {
            f"watch at {existing} existing: new file -> output median": statistics.median(
                latencies
            ),
            f"watch at {existing} existing: new file -> output max": max(latencies),
        }
    finally:
        proc.terminate()
        proc.wait(600)
        log.close()


def _small_jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (180, 120, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


def _one_new_file(path: Path, out: Path, data: bytes, proc: subprocess.Popen) -> float:
    path.write_bytes(data)
    start = time.perf_counter()
    _wait_for((out / path.name).with_suffix(".png").exists, proc, path.name, poll_s=0.01)
    return time.perf_counter() - start


def _wait_for(
    condition: Callable[[], bool],
    proc: subprocess.Popen,
    what: str,
    timeout: float = 1800,
    poll_s: float = 0.1,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            sys.exit(f"the watching process exited with {proc.returncode} (waiting for {what})")
        if time.monotonic() > deadline:
            sys.exit(f"{what}: not within {timeout} s")
        time.sleep(poll_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-api", action="store_true", help="time the query only")
    parser.add_argument("--whole", action="store_true", help="also time ?items=all")
    parser.add_argument("--watch", action="store_true", help="the watch row, not item pages")
    parser.add_argument("--existing", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--new", type=int, default=10, help="new files timed per folder")
    args = parser.parse_args()

    from unetbg.settings import get_settings

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
        env |= {"UNETBG_DATA_DIR": tmp, "OMP_NUM_THREADS": "1"}
        if args.database_url:
            env["UNETBG_DATABASE_URL"] = args.database_url
        settings = get_settings(env)
        figures: dict = {"database": settings.database_url.split(":", 1)[0]}
        if args.watch:
            figures["new"] = args.new
            for existing in args.existing:
                figures |= time_watch(Path(tmp), env, existing, args.new)
        else:
            start = time.perf_counter()
            record_job(settings, args.items)
            figures |= {"items": args.items, "page": args.page}
            figures["record (bulk insert) s"] = time.perf_counter() - start
            figures |= time_queries(settings, args.items, args.page, args.repeat)
            if not args.no_api:
                figures |= time_api(env, settings, args.items, args.page, args.repeat, args.whole)
    for name, value in figures.items():
        shown = (
            f"{value * 1000:9.1f} ms"
            if name.startswith(("query", "api", "watch")) and isinstance(value, float)
            else value
        )
        print(f"{name:45s} {shown}", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
