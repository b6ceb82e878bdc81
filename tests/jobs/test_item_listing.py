"""``unetbg status JOB --items``: a job's items printed page by page as they are read,
as a table or (``--json``) as JSON Lines after the job's line."""

from __future__ import annotations

import json
import subprocess

from service_fixtures import VENV_BIN
from unetbg import jobs
from unetbg.db import Job, JobItem
from unetbg.jobs.records import recount


def _record(job_id: str, count: int) -> None:
    """A finished remove-dir job of ``count`` items, every third one failed."""
    with jobs.db_session() as session:
        session.add(Job(id=job_id, kind="remove_dir", state="partial", progress_total=count))
        session.flush()
        session.add_all(
            JobItem(
                job_id=job_id,
                source_path=f"/in/{n:05d}.jpg",
                output_path=None if n % 3 == 0 else f"/out/{n:05d}.png",
                state="failed" if n % 3 == 0 else "succeeded",
                error=f"broken {n}" if n % 3 == 0 else None,
                person_share=None if n % 3 == 0 else 0.5,
            )
            for n in range(count)
        )
        session.flush()
        recount(session, job_id)  # rows written by hand: their counters follow


def _status(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "unetbg"), "status", *args], capture_output=True, text=True, timeout=120
    )


def test_items_are_listed_across_pages_once_each_under_one_header(embedded_env):
    _record("tablejob0001", 250)  # 84 failed: the 100-item pages of `all` end at 250

    failed = _status("tablejob0001", "--items", "failed")
    assert failed.returncode == 1, failed.stderr  # partial
    rows = failed.stdout.split("failed items:\n")[1].splitlines()
    assert rows[0].split()[:3] == ["ID", "STATE", "SECONDS"] and len(rows) == 1 + 84
    assert [r.split()[-1] for r in rows[1:]] == [str(n) for n in range(0, 250, 3)]

    everything = _status("tablejob0001", "--items", "all").stdout.split("all items:\n")[1]
    rows = everything.splitlines()
    assert sum(r.startswith("ID ") for r in rows) == 1 and len(rows) == 1 + 250
    ids = [int(r.split()[0]) for r in rows[1:]]
    assert ids == sorted(set(ids))

    lines = _status("tablejob0001", "--items", "no-person", "--json").stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["id"] == "tablejob0001"
    assert "(none)" in _status("tablejob0001", "--items", "no-person").stdout


def test_json_lines_are_written_as_the_pages_are_read(embedded_env):
    # 3,000 items are ~0.8 MB of JSON Lines, far more than a pipe holds: while this test
    # reads only the first line, the command can have read only the first few pages.
    _record("streamjob001", 3000)
    last = max(i.id for i in jobs.list_items("streamjob001"))
    command = [str(VENV_BIN / "unetbg"), "status", "streamjob001", "--items", "all", "--json"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        job = json.loads(proc.stdout.readline())
        assert job["id"] == "streamjob001" and "item_list" not in job
        assert job["items"] == {"failed": 1000, "succeeded": 2000}
        # Changed after the job's line was printed: listed as it is now only if the last
        # page is read after the first ones were written (not all read up front).
        with jobs.db_session() as session:
            session.get(JobItem, last).error = "changed while listing"
        listed = [json.loads(line) for line in proc.stdout]
    assert proc.returncode == 1  # partial
    assert [i["source_path"] for i in listed] == [f"/in/{n:05d}.jpg" for n in range(3000)]
    assert listed[-1]["id"] == last and listed[-1]["error"] == "changed while listing"
    assert set(listed[0]) == set(jobs.ItemView.__dataclass_fields__)
