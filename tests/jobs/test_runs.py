"""`unetbg runs list|prune` and sizes in `unetbg checkpoints`, on real run folders, real
files and the embedded job database (issue 11, item 15)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from click.testing import CliRunner

from unetbg import jobs
from unetbg.cli import main
from unetbg.db.models import Job

MiB = 2**20


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _run_folder(runs: Path, name: str, val_iou: float, register: bool, old: bool = True) -> Path:
    folder = runs / name
    folder.mkdir(parents=True)
    (folder / "best_model.pth").write_bytes(os.urandom(MiB))
    (folder / "last_model.pth").write_bytes(os.urandom(3 * MiB))  # the resume state: big
    (folder / "config.json").write_text("{}")
    records = [{"epoch": 1, "val_iou": val_iou / 2}, {"epoch": 2, "val_iou": val_iou}]
    (folder / "metrics.json").write_text(json.dumps(records))
    if register:
        job_id = name if name.startswith("job") else None
        with jobs.db_session() as session:
            if job_id:
                session.add(Job(id=job_id, kind="train", state="succeeded", progress_total=2))
                session.flush()
            for file, best in (("best_model.pth", True), ("last_model.pth", False)):
                jobs.register_checkpoint(
                    session, job_id, folder / file, 2, {"iou": val_iou}, is_best=best
                )
    if old:  # not written to for an hour: not a run in progress
        stamp = time.time() - 3600
        for path in [folder, *folder.iterdir()]:
            os.utime(path, (stamp, stamp))
    return folder


def test_prune_keeps_the_best_runs_and_every_registered_best(embedded_env, monkeypatch):
    runs = embedded_env / "runs"
    best = _run_folder(runs, "job000000001", 0.6, register=True)
    second = _run_folder(runs, "20261201_100000", 0.4, register=True)
    unregistered = _run_folder(runs, "20261201_110000", 0.5, register=False)
    live = _run_folder(runs, "20261201_120000", 0.1, register=False, old=False)

    listed = json.loads(run("runs", "list", "--json").stdout)
    assert [r["path"] for r in listed] == [str(p) for p in (best, unregistered, second, live)]
    assert listed[0]["bytes"] >= 4 * MiB and listed[0]["state"] == "succeeded"

    dry = run("runs", "prune", "--keep", "1")
    assert dry.exit_code == 0, dry.output
    assert f"would delete: {unregistered}" in dry.stdout
    assert f"would delete: {second / 'last_model.pth'}" in dry.stdout
    assert "would delete 7.0 MiB; run again with --yes" in dry.stdout
    assert f"busy, left alone: {live}" in dry.stdout
    assert (second / "last_model.pth").exists() and unregistered.exists()  # nothing deleted

    done = run("runs", "prune", "--keep", "1", "--yes")
    assert done.exit_code == 0, done.output
    assert "deleted 7.0 MiB" in done.stdout
    assert sorted(p.name for p in best.iterdir()) == [
        "best_model.pth", "config.json", "last_model.pth", "metrics.json"
    ]  # fmt: skip
    assert sorted(p.name for p in second.iterdir()) == [
        "best_model.pth",
        "config.json",
        "metrics.json",
    ]
    assert not unregistered.exists()
    assert (live / "last_model.pth").exists()  # written to just now: maybe training
    # The deleted checkpoint's registration went with it; `best` still resolves.
    paths = {c.path for c in jobs.list_checkpoints()}
    assert str(second / "last_model.pth") not in paths and str(second / "best_model.pth") in paths
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", "none")  # `best` among the registered only
    assert jobs.resolve_checkpoint("best") == str(best / "best_model.pth")


def test_checkpoints_say_their_size(embedded_env):
    folder = _run_folder(embedded_env / "runs", "job000000002", 0.3, register=True)
    table = run("checkpoints")
    assert table.exit_code == 0, table.output
    header = table.stdout.splitlines()[0].split()
    assert header[:6] == ["ID", "JOB", "EPOCH", "VAL", "IOU", "BEST"] and "SIZE" in header
    assert "3.0 MiB" in table.stdout and "1.0 MiB" in table.stdout
    sizes = {c["path"]: c["bytes"] for c in json.loads(run("checkpoints", "--json").stdout)}
    assert sizes[str(folder / "last_model.pth")] == 3 * MiB
    (folder / "last_model.pth").unlink()
    assert "missing" in run("checkpoints").stdout


def test_prune_takes_the_default_model_as_the_baseline(embedded_env, tmp_path, monkeypatch):
    from service_fixtures import make_carded_checkpoint

    default = make_carded_checkpoint(tmp_path / "default.pth", {"coco-mini": 0.40})
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", str(default))
    runs = embedded_env / "runs"
    # The highest pooled IoU, but below the default on the set both were scored on.
    worse = _run_folder(runs, "20261201_100000", 0.9, register=False)
    better = _run_folder(runs, "20261201_110000", 0.5, register=False)
    with jobs.db_session() as session:
        for folder, coco_mini in ((worse, 0.1), (better, 0.5)):
            metrics = {"iou": 0.9 if folder == worse else 0.5, "coco-mini_iou": coco_mini}
            jobs.register_checkpoint(session, None, folder / "best_model.pth", 2, metrics, True)

    listed = {r["path"]: r for r in json.loads(run("runs", "list", "--json").stdout)}
    assert listed[str(worse)]["beats_default"] is False
    assert listed[str(better)]["beats_default"] is True
    table = run("runs", "list").stdout
    assert "VS DEFAULT" in table and "worse" in table and "better" in table

    dry = run("runs", "prune", "--keep", "1")
    assert dry.exit_code == 0, dry.output
    assert f"below the default model, not kept whole: {worse}" in dry.stdout
    assert f"keep: {better}" in dry.stdout
    assert f"would delete: {worse / 'last_model.pth'}" in dry.stdout
    assert str(better / "last_model.pth") not in dry.stdout
