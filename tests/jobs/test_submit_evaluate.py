"""``unetbg submit-evaluate`` takes ``unetbg evaluate``'s options, and its job scores what
the foreground command scores (embedded mode: the job runs in this process)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from maskgen import make_mask_folder
from unetbg.cli import main
from unetbg.cli.evaluate import evaluate
from unetbg.cli.submit_evaluate import submit_evaluate


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_both_commands_have_one_option_set():
    def names(command) -> set[str]:
        return {p.name for p in command.params}

    own = {"wait", "json", "as_json", "group_by"}
    assert names(evaluate) - own == names(submit_evaluate) - own
    assert {"data", "image_size", "flip_average", "refine_edges"} <= names(submit_evaluate)


def test_a_job_scores_what_evaluate_scores(embedded_env, tmp_path, checkpoint):
    folder = make_mask_folder(tmp_path / "people", count=8)
    options = [
        *("--data", f"masks:{folder}", "--val-percent", 50, "--device", "cpu"),
        *("--image-size", 96, "--batch-size", 2, "--flip-average", "--refine-edges"),
        "--alpha-curve",
    ]
    here = run("evaluate", checkpoint, *options, "--json")
    assert here.exit_code == 0, here.output
    job = run("submit-evaluate", checkpoint, *options, "--json", "--wait")
    assert job.exit_code == 0, job.output
    figures, recorded = json.loads(here.stdout), json.loads(job.stdout)
    assert recorded["state"] == "succeeded"
    assert recorded["params"]["data"] == [f"masks:{folder}:1"]
    assert recorded["params"]["switches"] == {
        "flip_average": True,
        "refine_edges": True,
        "alpha_curve": True,
    }
    result = recorded["result"]
    assert result["alpha_curve"] == [0.1, 0.9]
    for key in ("images", "image_size", "flip_average", "refine_edges", "alpha_curve"):
        assert result[key] == figures[key], key
    assert (result["image_size"], result["flip_average"], result["refine_edges"]) == (
        96,
        True,
        True,
    )
    assert set(result["sources"]) == set(figures["sources"]) == {"people"}
    assert result["iou"] == pytest.approx(figures["iou"], abs=1e-6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((), "give --coco-root or at least one --data source"),
        (("--data", "masks:/no/such/folder"), "no such folder: /no/such/folder"),
        (("--data", "nope"), "is not KIND:PATH"),
        (("--data", "masks:/tmp", "--image-size", 100), "100 is not a multiple of 32"),
    ],
)
def test_bad_options_are_refused_before_recording(embedded_env, checkpoint, options, message):
    result = run("submit-evaluate", checkpoint, *options)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert json.loads(run("jobs", "--json").stdout) == []
