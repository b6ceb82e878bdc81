"""A training job's step progress inside its epoch: recorded at a bounded rate by the real
task, shown by `status`, `--wait` and the web page's table (issue 11, item 8)."""

from __future__ import annotations

import threading

from click.testing import CliRunner

from service_fixtures import SMOKE_TRAINING, wait_until
from unetbg import jobs
from unetbg.cli import _follow, main


def test_step_progress_while_training_shown_by_status_wait_and_web(
    embedded_env, coco_mini, monkeypatch
):
    from unetbg.web.tables import jobs_table

    job_id = jobs.create_train_job(
        "smoke",
        SMOKE_TRAINING | {"coco_root": str(coco_mini), "epochs": 3, "max_steps_per_epoch": 8},
    )
    runner = threading.Thread(target=jobs.dispatch, args=(job_id,), daemon=True)
    runner.start()
    try:
        view = wait_until(
            lambda: (v := jobs.get_job(job_id)).step_progress and v.state == "running" and v,
            180,
            "the first recorded step",
        )
        progress = view.step_progress
        assert (progress["epochs"], progress["steps"]) == (3, 8)
        assert 1 <= progress["step"] <= 8 and progress["loss"] > 0
        assert view.step_text.startswith(f"epoch {progress['epoch']}/3, step ")
        status = CliRunner().invoke(main, ["status", job_id])
        step_rows = [line for line in status.stdout.splitlines() if line.startswith("step ")]
        assert len(step_rows) == 1 and "/3, step " in step_rows[0] and "loss " in step_rows[0]
        (row,) = jobs_table([jobs.get_job(job_id)]).to_dict("records")
        assert "/3 (epoch " in row["progress"] and ", step " in row["progress"]
    finally:
        jobs.cancel_job(job_id)
        runner.join(120)
    final = jobs.get_job(job_id)
    assert final.state == "cancelled" and final.step_text is None  # a record, not shown

    # --wait (no terminal): the plain lines carry the step, at most once per EVERY_S.
    monkeypatch.setattr(_follow._WaitDisplay, "EVERY_S", 0.5)
    args = ["submit-train", "--preset", "smoke", "--coco-root", str(coco_mini), "--wait"]
    for key, value in (SMOKE_TRAINING | {"epochs": 2, "max_steps_per_epoch": 8}).items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    waited = CliRunner().invoke(main, args)
    assert waited.exit_code == 0, waited.output
    lines = [line for line in waited.stderr.splitlines() if ": running " in line]
    assert any(", step " in line and " img/s" in line for line in lines), waited.stderr


def test_step_progress_is_written_at_a_bounded_rate(embedded_env, coco_mini):
    from unetbg.tasks.train import StepRecorder, train_job

    job_id = jobs.create_train_job("smoke", SMOKE_TRAINING | {"coco_root": str(coco_mini)})
    record = StepRecorder(train_job, job_id, epochs=2, batch_size=4, every_s=3600)
    for step in range(1, 100):  # many steps within the hour: only the first is written
        record(1, step, 100, {"loss": 1.0 / step})
    assert jobs.get_job(job_id).step_progress["step"] == 1
    record(1, 100, 100, {"loss": 0.01})  # an epoch's last step is always written
    progress = jobs.get_job(job_id).step_progress
    assert (progress["epoch"], progress["step"], progress["loss"]) == (1, 100, 0.01)
    assert progress["images_per_s"] > 0 and progress["eta_s"] >= 0
