"""submit-train with --data: sources recorded as absolute paths, checked before recording."""

from __future__ import annotations

import json

from click.testing import CliRunner

from maskgen import make_mask_folder
from unetbg import jobs
from unetbg.cli import main


def test_relative_sources_are_recorded_absolute_and_the_job_trains(
    embedded_env, tmp_path, monkeypatch
):
    make_mask_folder(tmp_path / "sets" / "people", count=12)
    monkeypatch.chdir(tmp_path / "sets")
    result = CliRunner().invoke(
        main,
        [
            "submit-train", "--preset", "smoke", "--data", "masks:people:2",
            "--image-size", "64", "--val-limit", "none", "--samples-per-epoch", "8",
            "--epochs", "1", "--no-final-evaluation", "--device", "cpu", "--wait", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["state"] == "succeeded"
    config = jobs.get_job(job["id"]).params["config"]
    assert config["data"] == [f"masks:{tmp_path / 'sets' / 'people'}:2"]
    assert config["coco_root"] is None


def test_a_source_that_is_not_its_kind_is_refused_before_recording(embedded_env, tmp_path):
    (tmp_path / "photos").mkdir()
    result = CliRunner().invoke(
        main, ["submit-train", "--preset", "smoke", "--data", f"masks:{tmp_path / 'photos'}"]
    )
    assert result.exit_code == 2, result.output
    assert "is not a masks folder (no images/ folder in it)" in result.output
    none = CliRunner().invoke(main, ["submit-train", "--preset", "smoke"])
    assert none.exit_code == 2 and "a COCO root (--coco-root DIR) or sources" in none.output
    assert jobs.list_jobs() == []
