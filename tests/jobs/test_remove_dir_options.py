"""remove-dir's output options: recorded by the job, rebuilt by the chunks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from inference_fixtures import write_photo
from unetbg import jobs
from unetbg.cli import main
from unetbg.removal import OutputOptions, RunOptions


def test_output_options_round_trip_through_job_params(tmp_path):
    options = OutputOptions(kind="background", background=str(tmp_path / "bg.jpg"),
                            threshold=0.4, format="webp", png_level=7)  # fmt: skip
    stored = json.loads(json.dumps(options.to_params()))
    assert OutputOptions.from_params(stored) == options
    assert OutputOptions.from_params(stored).background == options.background
    # Jobs recorded before png_level existed still rebuild, with the default level.
    del stored["png_level"]
    assert OutputOptions.from_params(stored).png_level is None


def test_remove_dir_records_and_applies_the_png_level(embedded_env, tmp_path, checkpoint):
    photo = write_photo(tmp_path / "in" / "p.png", 64, 48)
    runner = CliRunner()
    outputs = {}
    for level in (0, 9):
        result = runner.invoke(
            main,
            ["remove-dir", str(photo.parent), str(tmp_path / f"out{level}"),
             "--checkpoint", str(checkpoint), "--png-level", str(level), "--wait", "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        job = jobs.get_job(json.loads(result.stdout)["id"])
        assert job.params["options"]["png_level"] == level
        outputs[level] = tmp_path / f"out{level}" / "p.png"
        assert Image.open(outputs[level]).size == (64, 48)
    # Level 0 stores the RGBA pixels uncompressed; level 9 compresses them.
    assert outputs[0].stat().st_size > 64 * 48 * 4 > outputs[9].stat().st_size


def test_remove_dir_runs_on_the_chosen_backend(embedded_env, tmp_path, checkpoint):
    pytest.importorskip("onnxruntime", reason="the onnxruntime extra is not installed")
    photo = write_photo(tmp_path / "in" / "p.jpg", 64, 48)
    masks = {}
    for backend in ("torch", "onnxruntime"):
        result = CliRunner().invoke(
            main,
            ["remove-dir", str(photo.parent), str(tmp_path / backend), "--kind", "mask",
             "--checkpoint", str(checkpoint), "--backend", backend, "--wait", "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        job = jobs.get_job(json.loads(result.stdout)["id"])
        assert job.params["backend"] == backend and job.state == "succeeded"
        masks[backend] = np.asarray(Image.open(tmp_path / backend / "p.png"), np.int16)
    assert np.abs(masks["torch"] - masks["onnxruntime"]).max() <= 2  # 8-bit alpha


def test_the_chunks_model_follows_a_checkpoint_rewritten_in_place(
    embedded_env, tmp_path, checkpoint
):
    # The chunk task's cache (the same in a worker process) keys on the file's identity.
    from inference_fixtures import rewrite_as_constant

    photo = write_photo(tmp_path / "in" / "p.png", 40, 30)
    model = rewrite_as_constant(checkpoint, tmp_path / "best_model.pth", person=True)
    masks = []
    for person in (True, False):
        if not person:
            rewrite_as_constant(checkpoint, model, person=False)
        job_id = jobs.create_remove_dir_job(
            photo.parent, tmp_path / "out", str(model), overwrite=True,
            output=OutputOptions(kind="mask"), run=RunOptions(device="cpu"),
        )  # fmt: skip
        jobs.dispatch(job_id)
        assert jobs.get_job(job_id).state == "succeeded"
        masks.append(np.asarray(Image.open(tmp_path / "out" / "p.png")))
    assert (masks[0] == 255).all() and (masks[1] == 0).all()


def test_remove_dir_records_the_run_options_and_old_records_still_run(
    embedded_env, tmp_path, checkpoint
):
    photo = write_photo(tmp_path / "in" / "p.png", 40, 30)
    result = CliRunner().invoke(
        main,
        ["remove-dir", str(photo.parent), str(tmp_path / "out"), "--checkpoint",
         str(checkpoint), "--no-flip-average", "--batch-size", "3", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    params = jobs.get_job(json.loads(result.stdout)["id"]).params
    assert RunOptions.from_params(params) == RunOptions(batch_size=3, flip_average=False)
    assert params["flip_average"] is False and params["refine_edges"] is None
