"""A remove-dir job's items recorded in short batches (issue 23, item 1), and a database
that another process keeps locked: a one-line error, never a traceback.

Real parts: a real SQLite file, a second real process holding its write lock
(``BEGIN IMMEDIATE``), real Redis as the broker (no worker: nothing runs the chunks),
the real ``unetbg`` command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from db_locks import write_lock
from service_fixtures import VENV_BIN


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
    from unetbg.jobs import recording
    from unetbg.jobs.records import RECORDING

    # Batches of 4 over 11 entries: two transactions, a chunk's images carried over.
    monkeypatch.setattr(recording, "RECORD_BATCH", 4)
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


def test_a_job_without_a_chunk_size_grows_its_chunks_and_one_with_it_keeps_it(
    submitter, checkpoint, tmp_path, monkeypatch
):
    from unetbg import jobs
    from unetbg.jobs import recording

    # Base 1 (UNETBG_CHUNK_SIZE), growing after 2 chunks, at most 3 images to a chunk;
    # batches of 4 so that growing chunks are carried across transactions too.
    monkeypatch.setenv("UNETBG_CHUNK_SIZE", "1")
    monkeypatch.setattr(recording, "GROW_AFTER", 2)
    monkeypatch.setattr(recording, "LARGEST_CHUNK", 3)
    monkeypatch.setattr(recording, "RECORD_BATCH", 4)
    folder = make_folder(tmp_path / "in", images=14)
    grown = jobs.create_remove_dir_job(folder, tmp_path / "a", str(checkpoint))
    fixed = jobs.create_remove_dir_job(folder, tmp_path / "b", str(checkpoint), chunk_size=1)

    def sizes(job_id):
        chunks = Counter(item.chunk for item in jobs.list_items(job_id))
        return [chunks[n] for n in range(len(chunks))]

    # Each chunk: max(1, min(3, images chunked before it // 2)); the last one takes the rest.
    assert sizes(grown) == [1, 1, 1, 1, 2, 3, 3, 2]
    assert sizes(fixed) == [1] * 14
    assert jobs.get_job(grown).params["largest_chunk"] == 3
    assert jobs.get_job(fixed).params["largest_chunk"] == 1


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


def test_a_submission_to_workers_imports_no_torch(queue, photos, checkpoint, tmp_path):
    """With a broker the model runs on the workers: the submitting ``unetbg remove-dir``
    checks the checkpoint's header and the device's name without importing torch."""
    from unetbg import jobs
    from unetbg.settings import get_settings

    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(VENV_BIN / "unetbg"), "remove-dir"]
        + [str(photos), str(tmp_path / "out"), "--checkpoint", str(checkpoint), "--json"],
        env=queue.cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert "unetbg.jobs.create" in imported  # the import log is there, and complete
    assert not {name for name in imported if name.split(".")[0] == "torch"}
    job = jobs.get_job(json.loads(done.stdout)["id"], get_settings(queue.cli_env()))
    assert job.state == "queued" and job.items == {"pending": 5}


def test_a_file_that_is_not_a_checkpoint_is_refused_before_recording(
    queue, photos, checkpoint, tmp_path
):
    from unetbg import jobs
    from unetbg.settings import get_settings

    settings = get_settings(queue.cli_env())
    before = {j.id for j in jobs.list_jobs(limit=1000, settings=settings)}
    not_zip = tmp_path / "notes.pth"
    not_zip.write_text("not a checkpoint")
    not_pickle = tmp_path / "zip.pth"
    with zipfile.ZipFile(not_pickle, "w") as archive:
        archive.writestr("bad/data.pkl", b"not a pickle")
    other = tmp_path / "other.pth"  # a real torch.save archive, of something else
    with zipfile.ZipFile(checkpoint) as source, zipfile.ZipFile(other, "w") as archive:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith("data.pkl"):
                data = data.replace(b"state_dict", b"other_dict")
            archive.writestr(name, data)
    reasons = {
        not_zip: "not a checkpoint file",  # (jobs.checkpoints, before the header)
        not_pickle: "not a readable checkpoint",
        other: "not a unetbg checkpoint (no state_dict)",
    }
    for path, reason in reasons.items():
        done = subprocess.run(
            [str(VENV_BIN / "unetbg"), "remove-dir", str(photos), str(tmp_path / "out")]
            + ["--checkpoint", str(path)],
            env=queue.cli_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"Error: refusing checkpoint {path}") and reason in line, line
    assert {j.id for j in jobs.list_jobs(limit=1000, settings=settings)} == before


#: A real submitting process that dies (exit 9) inside its second batch of items, the
#: first one committed: what a `remove-dir` killed during a large folder's recording does.
KILLED_WHILE_RECORDING = """
import os, sys
from unetbg import jobs
from unetbg.jobs import recording

recording.RECORD_BATCH = 4
shift_counts, calls = recording.shift_counts, []


def dying(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        os._exit(9)
    return shift_counts(*args, **kwargs)


recording.shift_counts = dying
jobs.create_remove_dir_job(sys.argv[1], sys.argv[2], sys.argv[3], chunk_size=3)
"""


def test_a_submitter_killed_while_recording_leaves_a_failed_job_not_an_open_one(
    queue, checkpoint, tmp_path
):
    from unetbg import jobs
    from unetbg.jobs.records import RECORDING
    from unetbg.settings import get_settings

    env = queue.cli_env()
    settings = get_settings(env)
    before = {j.id for j in jobs.list_jobs(limit=1000, settings=settings)}
    folder = make_folder(tmp_path / "in", images=9)
    args = [sys.executable, "-c", KILLED_WHILE_RECORDING, folder, tmp_path / "out", checkpoint]
    submitter = subprocess.Popen(list(map(str, args)), env=env, stderr=subprocess.PIPE, text=True)
    _, err = submitter.communicate(timeout=300)
    assert submitter.returncode == 9, err
    (job_id,) = {j.id for j in jobs.list_jobs(limit=1000, settings=settings)} - before
    job = jobs.get_job(job_id, settings=settings)
    assert job.state == "queued" and job.params[RECORDING].endswith(f":{submitter.pid}")
    assert job.items == {"pending": 3}  # the first batch's whole chunk only

    # Any command that shows jobs finds the submitter gone and fails the job, saying why.
    listed = subprocess.run(
        [str(VENV_BIN / "unetbg"), "jobs", "--json"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    job = jobs.get_job(job_id, settings=settings)
    assert job.state == "failed" and RECORDING not in job.params
    assert job.error.startswith("lost: the submitting process ")
    assert "run the same remove-dir again" in job.error
    assert job.items == {"failed": 3}
    assert {i.error for i in jobs.list_items(job_id, settings=settings)} == {job.error}
