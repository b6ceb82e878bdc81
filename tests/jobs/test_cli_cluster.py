"""The job commands as a user runs them against a broker: the ``unetbg`` executable from
a scratch folder, a real Redis and a real Celery worker started in another folder.

Paths, ``--json`` and exit statuses per command (embedded mode: ``test_cli_contract.py``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from service_fixtures import SMOKE_TRAINING, VENV_BIN, copy_photos

pytestmark = pytest.mark.services


def unetbg(cluster, cwd: Path, *args: object, timeout: float = 240) -> subprocess.CompletedProcess:
    """The installed ``unetbg`` run in ``cwd`` against ``cluster`` (stdout, stderr apart)."""
    return subprocess.run(
        [str(VENV_BIN / "unetbg"), *map(str, args)],
        cwd=cwd,
        env=cluster.cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_relative_folders_work_on_a_worker_elsewhere(cluster, coco_mini, tmp_path, checkpoint):
    # The worker runs in the repository; this command in a scratch folder, with
    # relative input and output folders and a relative checkpoint path.
    copy_photos(coco_mini, tmp_path / "in", 3, offset=30)
    (tmp_path / "model.pth").write_bytes(checkpoint.read_bytes())
    done = unetbg(
        cluster,
        tmp_path,
        "remove-dir",
        "in",
        "out",
        "--checkpoint",
        "model.pth",
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr + cluster.log_tail()
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded" and job["items"] == {"succeeded": 3}
    assert job["params"]["checkpoint"] == str(tmp_path / "model.pth")
    assert len(list((tmp_path / "out").rglob("*.png"))) == 3

    listed = json.loads(
        unetbg(cluster, tmp_path, "status", job["id"], "--items", "all", "--json").stdout
    )
    for item in listed["item_list"]:
        assert Path(item["source_path"]).is_absolute() and Path(item["output_path"]).is_absolute()
        assert item["source_path"].startswith(str(tmp_path / "in"))


def test_json_is_one_document_with_a_broker(cluster, coco_mini, tmp_path, checkpoint):
    copy_photos(coco_mini, tmp_path / "in", 1, offset=33)
    submits = {
        "remove-dir": ("remove-dir", "in", "out", "--checkpoint", checkpoint),
        "submit-evaluate": ("submit-evaluate", checkpoint, "--coco-root", coco_mini, "--limit", 1),
        "submit-train": (
            "submit-train", "--preset", "smoke", "--coco-root", coco_mini,
            *[a for k, v in SMOKE_TRAINING.items() for a in (f"--{k.replace('_', '-')}", v)],
        ),
    }  # fmt: skip
    for name, args in submits.items():
        # Without --wait: the job as queued; with --wait: the final job. Both one document.
        for wait in ((), ("--wait",)):
            done = unetbg(cluster, tmp_path, *args, "--json", *wait)
            assert done.returncode == 0, (name, wait, done.stderr, cluster.log_tail())
            job = json.loads(done.stdout)  # fails on an id line before the object
            assert done.stderr.splitlines()[0] == job["id"], (name, done.stderr)
            wanted = {"succeeded"} if wait else {"queued", "running", "succeeded"}
            assert job["state"] in wanted, (name, job)
            if name == "remove-dir":  # the second run finds every output there
                break
