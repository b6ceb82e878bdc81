"""Foreground `unetbg train` is a recorded training job, and `submit-train --resume
RUN_OR_JOB` continues a stopped run as a job (issue 11, item 9). Real training (tiny),
real database, the real task."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from click.testing import CliRunner

from service_fixtures import SMOKE_TRAINING, wait_until
from unetbg import jobs
from unetbg.cli import main

TINY = {**SMOKE_TRAINING, "max_steps_per_epoch": 1, "val_limit": 2, "final_evaluation": False}


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _options(settings: dict) -> list[str]:
    out = []
    for key, value in settings.items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            out.append(flag if value else f"--no-{key.replace('_', '-')}")
        else:
            out += [flag, str(value)]
    return out


def _epochs(job_id: str) -> list[tuple[int, str]]:
    return [(e.epoch, e.split) for e in jobs.list_epoch_metrics(job_id)]


def test_foreground_train_is_a_job_and_resumes_as_the_same_job(embedded_env, coco_mini, tmp_path):
    folder = tmp_path / "run"
    args = ["train", "--preset", "smoke", "--coco-root", coco_mini, "--output-dir", folder]
    first = run(*args, *_options(TINY))
    assert first.exit_code == 0, first.output
    (job,) = jobs.list_jobs()
    assert (job.kind, job.state, job.params["run_dir"]) == ("train", "succeeded", str(folder))
    assert f"job: {job.id}" in first.stdout
    assert _epochs(job.id) == [(1, "train"), (1, "val")]
    assert {c.job_id for c in jobs.list_checkpoints()} == {job.id}
    listed = run("jobs").stdout.splitlines()
    assert listed[1].startswith(f"{job.id}  train  succeeded")

    again = run("train", "--resume", folder, "--epochs", 2)
    assert again.exit_code == 0, again.output
    assert [j.id for j in jobs.list_jobs()] == [job.id]  # the same job went on
    resumed = jobs.get_job(job.id)
    assert resumed.state == "succeeded" and resumed.result["epochs_completed"] == 2
    assert _epochs(job.id) == [(e, s) for e in (1, 2) for s in ("train", "val")]


def test_submit_train_resume_continues_a_cancelled_job(embedded_env, coco_mini, tmp_path):
    job_id = jobs.create_train_job("smoke", TINY | {"coco_root": str(coco_mini), "epochs": 40})
    runner = threading.Thread(target=jobs.dispatch, args=(job_id,), daemon=True)
    runner.start()
    wait_until(lambda: jobs.list_epoch_metrics(job_id), 180, "the first epoch's metrics")
    jobs.cancel_job(job_id)
    runner.join(120)
    stopped = jobs.get_job(job_id)
    assert stopped.state == "cancelled"
    done = stopped.result["epochs_completed"]

    resumed = run("submit-train", "--resume", job_id[:6], "--epochs", done + 1, "--json")
    assert resumed.exit_code == 0, resumed.output
    job = json.loads(resumed.stdout)
    assert job["id"] == job_id and job["state"] == "succeeded", job
    assert job["result"]["epochs_completed"] == done + 1 and job["attempts"] == 2
    assert _epochs(job_id) == [(e, s) for e in range(1, done + 2) for s in ("train", "val")]

    # By run folder too; refusals are usage errors.
    again = run("submit-train", "--resume", job["params"]["run_dir"], "--epochs", done + 2)
    assert again.exit_code == 0, again.output
    assert jobs.get_job(job_id).result["epochs_completed"] == done + 2
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run("submit-train", "--resume", empty)
    assert nothing.exit_code == 2 and "holds no last_model.pth" in nothing.output
    assert run("submit-train", "--resume", "nosuchjob").exit_code == 2
    both = run("submit-train", "--resume", job_id, "--coco-root", coco_mini)
    assert both.exit_code == 2 and "drop --coco-root" in both.output
    assert Path(job["params"]["run_dir"], "last_model.pth").is_file()
