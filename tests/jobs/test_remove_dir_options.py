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
from unetbg.removal import OutputOptions


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
