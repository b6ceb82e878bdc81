"""A folder mixing good images with every kind of bad input, through the real
``unetbg remove-dir`` CLI and a real Celery worker (see corpus.py for the cases)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import corpus
import pytest
from PIL import Image

from service_fixtures import VENV_BIN
from unetbg import jobs

pytestmark = pytest.mark.services


def _cli(cluster, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "unetbg"), *map(str, args)],
        env=cluster.cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _remove_dir(cluster, inp: Path, out: Path, checkpoint: Path) -> tuple[str, dict]:
    done = _cli(
        cluster,
        "remove-dir",
        inp,
        out,
        "--checkpoint",
        checkpoint,
        "--wait",
        "--json",
        "--chunk-size",
        "8",
        "--batch-size",
        "4",
    )
    assert done.stdout, done.stderr + cluster.log_tail()
    job = json.loads(done.stdout)  # --json: one document on stdout, the id on stderr
    job_id = job["id"]
    # Exit status 1: the job ended partial (bad files failed), as documented.
    assert done.returncode == 1 and job["state"] == "partial", done.stderr + cluster.log_tail()
    return job_id, job


def _outside_output(root: Path) -> dict[str, str]:
    return {k: v for k, v in corpus.tree_digest(root).items() if not k.startswith("output")}


def test_bad_inputs_through_remove_dir(shared_env, tmp_path, checkpoint):
    sandbox = tmp_path / "sandbox"
    data = corpus.build(sandbox)
    out = sandbox / "output"
    before = _outside_output(sandbox)
    siblings = sorted(os.listdir(tmp_path))

    job_id, job = _remove_dir(shared_env, data.input, out, checkpoint)

    items = {os.path.relpath(i.source_path, data.input): i for i in jobs.list_items(job_id)}
    assert sorted(items) == sorted(c.relative for c in data.cases)
    for case in data.good:
        item = items[case.relative]
        assert item.state == "succeeded", (case, item)
        with Image.open(item.output_path) as result:
            assert (result.size, result.mode) == (case.size, "RGBA"), case
    for case in data.bad:
        item = items[case.relative]
        assert item.state == case.state and case.reason in (item.error or ""), (case, item)
    failed = [c for c in data.bad if c.state == "failed"]
    assert job["items"] == {
        "succeeded": len(data.good),
        "failed": len(failed),
        "skipped": len(data.bad) - len(failed),
    }
    assert job["progress_done"] == job["progress_total"] == len(data.good) + len(failed)

    # The real `status` command shows each failure with its reason ...
    shown = _cli(shared_env, "status", job_id, "--items", "failed")
    assert shown.returncode == 1, shown.stderr
    rows = shown.stdout.split("failed items:")[1].strip().splitlines()[1:]
    assert len(rows) == len(failed), shown.stdout
    for case in failed:
        assert any(str(data.path(case)) in r and case.reason in r for r in rows), case
    # ... and `--items all` the skipped files with theirs.
    listed = _cli(shared_env, "status", job_id, "--items", "all").stdout
    print(listed)  # shown with -s: the observed outcome of every case (docs/reliability.md)
    for case in data.bad:
        line = next(r for r in listed.splitlines() if f"{data.path(case)}  " in r)
        assert f"  {case.state}  " in line and case.reason in line, (case, line)

    # Inputs (and everything beside OUTPUT) are byte-identical; OUTPUT holds exactly
    # one output per good image and nothing else (no temporary files).
    assert _outside_output(sandbox) == before
    assert sorted(os.listdir(tmp_path)) == siblings
    written = sorted(p for p in out.rglob("*") if not p.is_dir())
    assert written == sorted(Path(items[c.relative].output_path) for c in data.good)

    # Running the same command again processes only what is missing or failed.
    redo = Path(items["plain.jpg"].output_path)
    redo.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in written if p != redo}
    again_id, again = _remove_dir(shared_env, data.input, out, checkpoint)
    again_items = {os.path.relpath(i.source_path, data.input): i for i in jobs.list_items(again_id)}
    processed = {r for r, i in again_items.items() if i.state in ("succeeded", "failed")}
    assert processed == {"plain.jpg"} | {c.relative for c in failed}
    assert again["items"]["succeeded"] == 1 and redo.is_file()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert _outside_output(sandbox) == before
