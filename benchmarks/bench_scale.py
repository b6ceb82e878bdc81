"""How unetbg behaves with very large jobs (issue 23). Rows so far: item pages.

    .venv/bin/python benchmarks/bench_scale.py [--items 100000] [--page 100]
        [--database-url URL] [--repeat 5] [--no-api] [--whole]

Item pages: a remove-dir job of ``--items`` items (1 in 50 failed, 1 in 500 showing no
person) is recorded straight through the jobs layer's tables, in bulk (planning a real
folder of that size is another row's subject), in a fresh SQLite file under a temporary
data dir, or in ``--database-url`` (an empty PostgreSQL database, say). Then one page of
``--page`` items is timed (median of ``--repeat``) at the start, the middle and the end
of the job, for each state filter, through ``unetbg.jobs.item_page``; and, unless
``--no-api``, through a real ``unetbg serve`` on loopback (``GET /api/jobs/ID/items``,
with its key), which adds HTTP and JSON to the same query. ``--whole`` also times
``GET /api/jobs/ID?items=all``, the one-answer form, for comparison.

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

from _common import free_port

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-api", action="store_true", help="time the query only")
    parser.add_argument("--whole", action="store_true", help="also time ?items=all")
    args = parser.parse_args()

    from unetbg.settings import get_settings

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
        env |= {"UNETBG_DATA_DIR": tmp, "OMP_NUM_THREADS": "1"}
        if args.database_url:
            env["UNETBG_DATABASE_URL"] = args.database_url
        settings = get_settings(env)
        start = time.perf_counter()
        record_job(settings, args.items)
        figures: dict = {"items": args.items, "page": args.page}
        figures["record (bulk insert) s"] = time.perf_counter() - start
        figures["database"] = settings.database_url.split(":", 1)[0]
        figures |= time_queries(settings, args.items, args.page, args.repeat)
        if not args.no_api:
            figures |= time_api(env, settings, args.items, args.page, args.repeat, args.whole)
    for name, value in figures.items():
        shown = (
            f"{value * 1000:9.1f} ms"
            if name.startswith(("query", "api")) and isinstance(value, float)
            else value
        )
        print(f"{name:45s} {shown}", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
