"""`unetbg train` and `unetbg evaluate` through click, on the real COCO subset."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from unetbg.cli import main


def _invoke(args, env=None):
    return CliRunner().invoke(main, args, env=env)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_train_with_cuda_and_no_gpu_fails_clearly_instead_of_falling_back(coco_mini, tmp_path):
    result = _invoke(
        [
            "train",
            "--preset",
            "smoke",
            "--coco-root",
            str(coco_mini),
            "--device",
            "cuda",
            "--output-dir",
            str(tmp_path / "run"),
        ]
    )
    assert result.exit_code == 2
    assert "cuda" in result.output.lower()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "huge"], "'huge' is not one of"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--image-size", "100"], "multiple of 32"),
        (["--crowd", "maybe"], "crowd must be one of"),
    ],
)
def test_train_refuses_bad_options_with_the_reason(coco_mini, tmp_path, args, message):
    result = _invoke(["train", "--coco-root", str(coco_mini), "--output-dir", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_train_needs_a_coco_root(tmp_path):
    result = _invoke(["train", "--preset", "smoke", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--coco-root is required" in result.output


def test_train_help_lists_every_config_field():
    from unetbg.training.config import field_names

    result = _invoke(["train", "--help"])
    assert result.exit_code == 0
    for name in field_names():
        assert "--" + name.replace("_", "-") in result.output, name


_TINY = [
    "--preset",
    "smoke",
    "--epochs",
    "1",
    "--no-final-evaluation",
    "--image-size",
    "64",
    "--max-steps-per-epoch",
    "1",
    "--val-limit",
    "2",
    "--train-limit",
    "4",
    "--device",
    "cpu",
]


@pytest.mark.slow
def test_train_into_the_default_run_folder_then_resume_it_for_one_more_epoch(coco_mini, tmp_path):
    env = {"UNETBG_DATA_DIR": str(tmp_path / "data")}
    first = _invoke(["train", "--coco-root", str(coco_mini), *_TINY], env=env)
    assert first.exit_code == 0, first.output
    runs = list((tmp_path / "data" / "runs").iterdir())
    assert len(runs) == 1 and f"run folder: {runs[0]}" in first.output
    assert "status: completed after 1 epoch(s)" in first.output

    # Options given with --resume override the run's saved config.json; the rest is kept.
    second = _invoke(
        ["train", "--resume", str(runs[0]), "--epochs", "2", "--final-evaluation"], env=env
    )
    assert second.exit_code == 0, second.output
    assert "status: completed after 2 epoch(s)" in second.output
    assert "all-foreground" in second.output
    config = json.loads((runs[0] / "config.json").read_text())
    assert config["epochs"] == 2 and config["image_size"] == 64 and config["final_evaluation"]
    assert [r["epoch"] for r in json.loads((runs[0] / "metrics.json").read_text())] == [1, 2]

    table = _invoke(
        [
            "evaluate",
            str(runs[0] / "best_model.pth"),
            "--coco-root",
            str(coco_mini),
            "--limit",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert table.exit_code == 0, table.output
    assert "on 2 val images" in table.output
    assert [line.split()[0] for line in table.output.splitlines()[2:5]] == ["IoU", "Dice", "pixel"]


def test_evaluate_refuses_a_file_that_is_not_a_checkpoint(coco_mini, tmp_path):
    bogus = tmp_path / "model.pth"
    bogus.write_bytes(b"not a checkpoint")
    result = _invoke(["evaluate", str(bogus), "--coco-root", str(coco_mini), "--device", "cpu"])
    assert result.exit_code == 2  # a usage error: nothing is loaded or scored
    assert "Error:" in result.output and "Traceback" not in result.output


def test_train_registers_its_checkpoints_and_never_reuses_a_run_folder(
    coco_mini, tmp_path, monkeypatch
):
    from unetbg.jobs import list_checkpoints, list_jobs, resolve_checkpoint
    from unetbg.settings import get_settings
    from unetbg.training import resolve_config
    from unetbg.training.fit import fit

    monkeypatch.setenv("UNETBG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("UNETBG_DATABASE_URL", raising=False)
    run = tmp_path / "run"
    args = ["train", "--coco-root", str(coco_mini), *_TINY, "--output-dir", str(run)]
    first = _invoke(args)
    assert first.exit_code == 0, first.output

    # Registered like a submitted job's (the run is a job), so `--checkpoint best` finds it.
    settings = get_settings()
    rows = list_checkpoints(settings=settings)
    (job,) = list_jobs(settings=settings)
    assert sorted((Path(c.path).name, c.is_best, c.job_id, c.epoch) for c in rows) == [
        ("best_model.pth", True, job.id, 1),
        ("last_model.pth", False, job.id, 1),
    ]
    # `best` among the registered only: one epoch does not beat the default model.
    no_default = replace(settings, default_model="none")
    assert resolve_checkpoint("best", no_default) == str((run / "best_model.pth").resolve())

    # The same folder again without --resume: refused, nothing replaced.
    digest = hashlib.sha256((run / "last_model.pth").read_bytes()).hexdigest()
    again = _invoke(args)
    assert again.exit_code == 2, again.output
    assert f"{run} already holds a trained model" in again.output
    assert f"`unetbg train --resume {run}`" in again.output
    assert hashlib.sha256((run / "last_model.pth").read_bytes()).hexdigest() == digest
    cfg = resolve_config("smoke", coco_root=str(coco_mini), device="cpu")
    with pytest.raises(ValueError, match="already holds a trained model"):
        fit(cfg, run)
    assert hashlib.sha256((run / "last_model.pth").read_bytes()).hexdigest() == digest

    # `unetbg evaluate` takes `best` and a registered id, like remove-dir: `best` is the
    # shipped default, which the one-epoch run does not beat, and says why.
    best_id = next(c.id for c in rows if c.is_best)
    scored = {}
    for spec in ("best", str(best_id)):
        scored[spec] = _invoke(
            ["evaluate", spec, "--coco-root", str(coco_mini), "--limit", "2", "--device", "cpu"]
        )
        assert scored[spec].exit_code == 0, scored[spec].output
    assert scored["best"].output.startswith("using the default model ")
    assert f"registered checkpoint {best_id} scored val IoU" in scored["best"].output
    run_best = f"{(run / 'best_model.pth').resolve()} (epoch 1)"
    assert scored[str(best_id)].output.startswith(run_best)


def test_evaluate_best_with_nothing_registered_is_a_usage_error(coco_mini, tmp_path, monkeypatch):
    monkeypatch.setenv("UNETBG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("UNETBG_DATABASE_URL", raising=False)
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", "none")  # no shipped model to fall back on
    result = _invoke(["evaluate", "best", "--coco-root", str(coco_mini), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "no trained checkpoint is registered" in result.output
    assert "Traceback" not in result.output
    missing = _invoke(["evaluate", str(tmp_path / "x.pth"), "--coco-root", str(coco_mini)])
    assert missing.exit_code == 2 and "checkpoint file not found" in missing.output


@pytest.mark.parametrize("existing", [False, True])
def test_train_offline_with_imagenet_weights_says_how_and_leaves_nothing(
    coco_mini, tmp_path, monkeypatch, existing
):
    # An empty hub cache and a proxy on a closed local port make the download fail
    # deterministically, whether or not this machine has network access.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("UNETBG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("UNETBG_DATABASE_URL", raising=False)
    run = tmp_path / "run"
    if existing:  # a folder the user made: kept, with what was in it
        run.mkdir()
        (run / "notes.txt").write_text("mine")
    result = _invoke(
        ["train", "--preset", "fast", "--coco-root", str(coco_mini), "--output-dir", str(run)]
    )
    assert result.exit_code == 2, result.output
    assert (
        "download failed (offline?): pass --encoder-weights /path/resnet34.pth "
        "(a torchvision ResNet34 state_dict) or --encoder-weights none"
    ) in result.output
    assert "Traceback" not in result.output
    if existing:
        assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    else:
        assert not run.exists()


def test_evaluate_on_a_folder_that_is_not_coco_is_a_usage_error(tmp_path, tmp_path_factory):
    from inference_fixtures import tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path_factory)
    result = _invoke(["evaluate", str(checkpoint), "--coco-root", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "annotation" in result.output.lower() and "Traceback" not in result.output


@pytest.mark.slow
def test_sigterm_stops_a_foreground_run_at_its_next_step_ready_to_resume(coco_mini, tmp_path):
    """`kill PID` (SIGTERM) ends `unetbg train` as Ctrl-C does: the job is cancelled at its
    next step, last_model.pth keeps the position, the exit status says cancelled (1) and
    the command to continue is printed; a background run (`cmd &` ignores SIGINT) can be
    stopped only so."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    args = [*_TINY, "--epochs", "500", "--output-dir", str(run_dir)]
    env = dict(os.environ, UNETBG_DATA_DIR=str(tmp_path / "data"))
    env.pop("UNETBG_BROKER_URL", None)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "unetbg"),
            "train",
            "--coco-root",
            str(coco_mini),
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "last_model.pth").is_file():  # an epoch or more behind it
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no epoch finished in 120 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, output
    assert "status: cancelled after" in output
    assert f"continue it with `unetbg train --resume {run_dir}`" in output
    epochs = json.loads((run_dir / "metrics.json").read_text())
    assert 1 <= len(epochs) < 500

    listed = _invoke(["jobs", "--json"], env={"UNETBG_DATA_DIR": str(tmp_path / "data")})
    (job,) = json.loads(listed.output)
    assert job["state"] == "cancelled" and job["kind"] == "train"
