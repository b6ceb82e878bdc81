"""The job commands without a broker: tables, --json and exit statuses."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from unetbg.cli import main


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_remove_dir_embedded_then_status(embedded_env, photos, tmp_path, checkpoint):
    out = tmp_path / "out"
    result = run("remove-dir", photos, out, "--checkpoint", checkpoint, "--chunk-size", "2")
    assert result.exit_code == 0, result.output
    job_id = result.stdout.splitlines()[0]
    assert "running the job in this process" in result.stderr
    assert "succeeded" in result.stderr and len(list(out.rglob("*.png"))) == 5

    status = run("status", job_id[:8])
    assert status.exit_code == 0
    lines = status.stdout.splitlines()
    assert lines[0].split() == ["job", job_id] and lines[3].split() == ["progress", "5/5", "images"]
    # With --items, JSON Lines: the job's object, then one line per item.
    data, *listed = map(
        json.loads, run("status", job_id, "--items", "all", "--json").stdout.splitlines()
    )
    assert data["state"] == "succeeded" and "item_list" not in data and len(listed) == 5
    assert {i["state"] for i in listed} == {"succeeded"}

    table = run("jobs").stdout.splitlines()
    assert table[0].split() == ["ID", "KIND", "STATE", "PROGRESS", "CREATED", "RUN", "TIME", "NOTE"]
    assert table[1].startswith(f"{job_id}  remove_dir  succeeded")
    assert [j["id"] for j in json.loads(run("jobs", "--json", "--state", "succeeded").stdout)] == [
        job_id
    ]
    assert json.loads(run("jobs", "--json", "--kind", "train").stdout) == []

    again = run("remove-dir", photos, out, "--checkpoint", checkpoint)
    assert again.exit_code == 0
    rerun = json.loads(run("status", again.stdout.splitlines()[0], "--json").stdout)
    assert rerun["items"] == {"skipped": 5} and rerun["progress_total"] == 0


def test_partial_job_exits_1_and_lists_failures(embedded_env, photos, tmp_path, checkpoint):
    (photos / "broken.png").write_bytes(b"not a png")
    result = run("remove-dir", photos, tmp_path / "out", "--checkpoint", checkpoint, "--wait")
    assert result.exit_code == 1, result.output
    assert (
        "partial" in result.stderr and "failed: " in result.stderr and "broken.png" in result.stderr
    )
    job_id = result.stdout.splitlines()[0]
    status = run("status", job_id, "--items", "failed")
    assert status.exit_code == 1
    assert "failed items:" in status.stdout and "broken.png" in status.stdout
    assert "000000" not in status.stdout.split("failed items:")[1]  # only the failed one


def test_usage_errors_exit_2(embedded_env, photos, tmp_path, checkpoint, monkeypatch):
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", "none")  # no shipped model to fall back on
    none = run("remove-dir", photos, tmp_path / "out")
    assert none.exit_code == 2
    assert (
        "no trained checkpoint is registered" in none.output and "--checkpoint PATH" in none.output
    )
    assert run("status", "nosuchjob").exit_code == 2
    assert run("cancel", "nosuchjob").exit_code == 2
    assert (
        run(
            "remove-dir",
            photos,
            tmp_path / "o",
            "--checkpoint",
            checkpoint,
            "--color",
            "red",
            "--kind",
            "mask",
        ).exit_code
        == 2
    )
    chunk = run("remove-dir", photos, tmp_path / "o", "--checkpoint", checkpoint, "--chunk-size", 0)
    assert chunk.exit_code == 2 and "--chunk-size" in chunk.output, chunk.output
    worker = run("worker")
    assert worker.exit_code == 2 and "UNETBG_BROKER_URL" in worker.output
    queues = run("worker", "--queues", "gpu")  # refused before the broker is looked for
    assert queues.exit_code == 2 and "unknown queue(s) gpu" in queues.output, queues.output
    bad_preset = run("submit-train", "--preset", "smoke", "--coco-root", tmp_path, "--epochs", "0")
    assert bad_preset.exit_code == 2 and "epochs must be >= 1" in bad_preset.output
    assert "Exit status: 0" in run("remove-dir", "--help").output
    assert "no checkpoints registered" in run("checkpoints").output
    assert run("jobs").output.strip() == "no jobs"


def test_submit_train_and_evaluate_run_in_process(embedded_env, coco_mini):
    train = run(
        "submit-train",
        "--preset",
        "smoke",
        "--coco-root",
        coco_mini,
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "2",
        "--image-size",
        "64",
        "--batch-size",
        "2",
        "--val-limit",
        "4",
        "--device",
        "cpu",
        "--json",
        "--wait",
    )
    assert train.exit_code == 0, train.output
    job = json.loads(train.stdout)  # one JSON document; the id went to stderr
    job_id = job["id"]
    assert train.stderr.splitlines()[0] == job_id
    assert job["state"] == "succeeded" and job["result"]["epochs_completed"] == 1
    assert job["params"]["run_dir"] == str(embedded_env / "runs" / job_id)
    status = json.loads(run("status", job_id, "--json").stdout)
    assert [(e["epoch"], e["split"]) for e in status["epochs"]] == [(1, "train"), (1, "val")]
    best = [c for c in status["checkpoints"] if c["is_best"]]
    assert len(best) == 1 and best[0]["path"].endswith("best_model.pth")

    # Two smoke steps do not beat the default model: `best` stays the default, saying why.
    listed = run("checkpoints")
    assert listed.exit_code == 0, listed.output
    assert "best: using the default model" in listed.stdout
    assert f"registered checkpoint {best[0]['id']} " in listed.stdout
    # Named by its id, the trained checkpoint is scored; the job says which model.
    common = ["--coco-root", coco_mini, "--limit", "2", "--device", "cpu", "--json", "--wait"]
    evaluate = run("submit-evaluate", best[0]["id"], *common)
    assert evaluate.exit_code == 0, evaluate.output
    figures = json.loads(evaluate.stdout)
    assert figures["state"] == "succeeded"
    assert figures["params"]["checkpoint"] == best[0]["path"]
    assert figures["params"]["model"]["id"] == best[0]["id"]
    shown = run("status", figures["id"]).stdout
    assert f"checkpoint {best[0]['id']} ({best[0]['path']})" in shown
    assert figures["result"]["images"] == 2 and 0 <= figures["result"]["iou"] <= 1


@pytest.mark.parametrize("flag", ["--flip-average", "--refine-edges"])
def test_remove_dir_inference_flags_reach_the_model(
    embedded_env, photos, tmp_path, checkpoint, flag
):
    # Soft masks: every change to the probabilities shows in the bytes.
    common = ["--checkpoint", checkpoint, "--kind", "mask", "--json"]
    param = flag.removeprefix("--").replace("-", "_")
    plain = run("remove-dir", photos, tmp_path / "plain", *common)
    told = run("remove-dir", photos, tmp_path / "told", *common, flag)
    assert plain.exit_code == 0 and told.exit_code == 0, plain.output + told.output
    assert json.loads(plain.stdout)["params"][param] is None  # the checkpoint's
    assert json.loads(told.stdout)["params"][param] is True
    names = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*.png"))
    assert len(names) == 5
    differ = [
        n
        for n in names
        if (tmp_path / "plain" / n).read_bytes() != (tmp_path / "told" / n).read_bytes()
    ]
    assert differ, f"the same masks with and without {flag}"


def test_jobs_cuts_a_long_note_between_words(embedded_env):
    # Issue 20 item 13: the NOTE column stopped mid-word. A training job whose worker
    # vanished an hour ago: `jobs` marks it lost, with a long, many-worded reason.
    from datetime import timedelta

    from unetbg import jobs
    from unetbg.db.models import Job, utcnow

    with jobs.db_session() as session:
        job = Job(
            kind="train",
            state="running",
            heartbeat_at=utcnow() - timedelta(hours=1),
            worker_host="gone-host:2",
        )
        session.add(job)
    header, row = run("jobs").stdout.splitlines()
    error = jobs.get_job(job.id).error
    assert error.startswith(jobs.LOST_PREFIX) and len(error) > 60 and error.count(" ") > 5

    note = row[header.index("NOTE") :]
    assert note.endswith("…") and len(note) <= 60, note
    shown = note.removesuffix("…")
    # Whole words of the error, followed there by a space: none is cut.
    assert error.startswith(shown) and error[len(shown)] == " ", (note, error)
    assert len(shown.split()) >= 5  # as many words as fit, not just the first
    assert run("status", job.id).stdout.count(error) == 1  # status shows it whole


def test_flower_on_a_busy_port_says_so_in_one_line(tmp_path):
    # Issue 20 item 13: Flower died with a traceback on a port another program holds.
    # A real `unetbg flower` process: on success it replaces itself with Flower.
    import os
    import socket
    import subprocess

    from service_fixtures import VENV_BIN, free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
    env |= {
        "UNETBG_DATA_DIR": str(tmp_path / "data"),
        # Never reached: the port is checked before Flower starts.
        "UNETBG_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [str(VENV_BIN / "unetbg"), "flower", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"Error: port {port} on 127.0.0.1 is in use: stop what listens there or pick "
        "another (--port)"
    ]
    assert result.stdout == ""
