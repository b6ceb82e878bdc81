"""A remove-dir job's items recorded in short batches (issue 23, item 1), and a database
that another process keeps locked: a one-line error, never a traceback.

Real parts: a real SQLite file, a second real process holding its write lock
(``BEGIN IMMEDIATE``), real Redis as the broker (no worker: nothing runs the chunks),
the real ``unetbg`` command.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from service_fixtures import VENV_BIN, Cluster, make_cluster, use_cluster


@pytest.fixture(scope="module")
def queue(redis_server, tmp_path_factory) -> Cluster:
    """A broker and a migrated SQLite database, and no worker: submissions stay queued."""
    return make_cluster(tmp_path_factory.mktemp("queue"), redis_server)


@pytest.fixture
def submitter(queue: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    return use_cluster(queue, monkeypatch)


def make_folder(folder: Path, images: int, others: int = 0) -> Path:
    """``images`` tiny real JPEGs (half of them in a sub-folder) and ``others`` text files."""
    for n in range(images):
        path = folder / ("sub" if n % 2 else "") / f"img{n:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (n, 0, 0)).save(path)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(others):
        (folder / f"note{n}.txt").write_text("not an image")
    return folder


def test_items_recorded_in_several_batches_form_the_same_job(
    submitter, checkpoint, tmp_path, monkeypatch
):
    from unetbg import jobs
    from unetbg.jobs import create
    from unetbg.jobs.records import RECORDING

    # Batches of 4 over 11 entries: three transactions, the last one short.
    monkeypatch.setattr(create, "RECORD_BATCH", 4)
    folder = make_folder(tmp_path / "in", images=9, others=2)
    job_id = jobs.create_remove_dir_job(folder, tmp_path / "out", str(checkpoint), chunk_size=3)
    view = jobs.get_job(job_id)
    assert view.state == "queued" and RECORDING not in view.params
    assert view.items == {"pending": 9, "skipped": 2} and view.progress_total == 9
    items = jobs.list_items(job_id)
    pending = [i for i in items if i.state == "pending"]
    # Chunks count the images to do across batches: 3 chunks of 3, in planning order.
    assert [i.chunk for i in pending] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert {i.error for i in items if i.state == "skipped"} == {"not an image extension"}
    assert {Path(i.source_path).name for i in pending} == {f"img{n:03d}.jpg" for n in range(9)}


def test_an_empty_folder_is_refused_and_a_folder_with_nothing_to_do_ends_at_once(
    submitter, checkpoint, tmp_path
):
    from unetbg import jobs

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(jobs.JobError, match="no images found"):
        jobs.create_remove_dir_job(empty, tmp_path / "out", str(checkpoint))
    notes = make_folder(tmp_path / "notes", images=0, others=3)
    job_id = jobs.create_remove_dir_job(notes, tmp_path / "out", str(checkpoint))
    view = jobs.get_job(job_id)
    assert view.state == "succeeded" and view.items == {"skipped": 3}


HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
db.execute("ROLLBACK")
"""


@contextmanager
def write_lock(database_url: str) -> Iterator[None]:
    """Another process holding the database's write lock while the block runs."""
    database = database_url.removeprefix("sqlite:///")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, database],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_a_database_locked_past_the_busy_timeout_is_a_one_line_error(
    queue, photos, checkpoint, tmp_path
):
    from unetbg import jobs
    from unetbg.settings import get_settings

    env = queue.cli_env()
    settings = get_settings(env)
    before = {j.id for j in jobs.list_jobs(limit=1000, settings=settings)}
    commands = {
        "remove-dir": ["remove-dir", photos, tmp_path / "out", "--checkpoint", checkpoint],
        "jobs": ["jobs"],
    }
    with write_lock(queue.database_url):
        # Both wait out the busy timeout side by side, then give up.
        running = {
            name: subprocess.Popen(
                [str(VENV_BIN / "unetbg"), *map(str, args)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, args in commands.items()
        }
        finished = {name: (proc, *proc.communicate(timeout=300)) for name, proc in running.items()}
    for name, (proc, out, err) in finished.items():
        assert proc.returncode == 2, (name, out, err)
        assert "Traceback" not in err and "OperationalError" not in err, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (name, err)
        assert lines[0].startswith("Error: the job database is busy"), (name, err)
    # Nothing recorded: the refused submission left no job behind.
    assert {j.id for j in jobs.list_jobs(limit=1000, settings=settings)} == before
