"""``unetbg coco`` commands through click's CliRunner, and one real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from unetbg.cli import main
from unetbg.data.checks import analyze

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, ["coco", *args], catch_exceptions=False)

    return invoke


def test_help_explains_every_option(run):
    out = run("--help").output
    for name in ("quick", "verify", "analyze", "batch"):
        assert name in out
        help_text = run(name, "--help").output
        assert "--root" in help_text and "--split" in help_text and "[default: val]" in help_text
    assert "How many images to decode" in run("verify", "--help").output
    assert "Crowd regions" in run("analyze", "--help").output


def test_quick_missing_prints_download_commands(run, tmp_path):
    result = run("quick", "--root", str(tmp_path / "COCO"), "--split", "val")
    assert result.exit_code == 1
    assert "FAIL  image folder" in result.output
    assert "wget -c http://images.cocodataset.org/zips/val2017.zip" in result.output
    assert (
        "wget -c http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
        in result.output
    )
    assert (
        f"unzip -o {tmp_path}/COCO/annotations_trainval2017.zip -d {tmp_path}/COCO" in result.output
    )


def test_quick_ok(run, coco_root):
    result = run("quick", "--root", str(coco_root))
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS") == 3


def test_verify_real_subset_passes_on_cpu(run, coco_mini):
    result = run(
        "verify",
        "--root",
        str(coco_mini),
        "--sample",
        "4",
        "--batch-size",
        "2",
        "--image-size",
        "64",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines() if line.startswith("  ")]
    assert [(w[0], w[1]) for w in lines][:7] == [
        ("PASS", "structure"),
        ("PASS", "annotations"),
        ("PASS", "images"),
        ("PASS", "decode"),
        ("PASS", "data"),
        ("PASS", "device"),
        ("PASS", "model"),
    ]
    assert "Device used: cpu" in result.output and "All checks passed." in result.output


def test_verify_fails_with_nonzero_exit(run, tmp_path):
    result = run("verify", "--root", str(tmp_path), "--device", "cpu")
    assert result.exit_code == 1
    assert "FAIL  annotations" in result.output and "SKIP  model forward" in result.output
    assert "FAILED: structure, annotations" in result.output


def test_analyze_human_and_json(run, generated_coco):
    root = str(generated_coco.root)
    text = run("analyze", "--root", root).output
    assert "images on disk                  6 (1 missing, 1 unlisted files)" in text
    data = json.loads(run("analyze", "--root", root, "--json", "--min-area", "100").output)
    assert data["valid_person_annotations"] == 8  # the 16-pixel person is rejected
    assert data["filter"] == {"min_area": 100.0, "crowd": "ignore", "require_keypoints": False}
    missing = run("analyze", "--root", root + "-absent")
    assert missing.exit_code == 1 and "no annotation file" in missing.output


def test_batch_prints_shapes_and_timing(run, generated_coco):
    result = run(
        "batch",
        "--root",
        str(generated_coco.root),
        "--batch-size",
        "6",
        "--image-size",
        "64",
        "--augment",
    )
    assert result.exit_code == 0, result.output
    assert "image   6×3×64×64  float32" in result.output
    assert "ms/image" in result.output
    assert "unreadable" in result.output and "truncated" in result.output


def test_analyze_json_subprocess_matches_api(coco_mini):
    exe = Path(sys.executable).with_name("unetbg")
    proc = subprocess.run(
        [
            str(exe),
            "coco",
            "analyze",
            "--root",
            "../shared/data/coco-mini",
            "--split",
            "val",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data = json.loads(proc.stdout)
    expected = analyze(REPO / "../shared/data/coco-mini", "val").to_dict()
    assert data["root"] == "../shared/data/coco-mini"
    for key in (
        "images_total",
        "person_annotations",
        "valid_person_annotations",
        "crowd_annotations",
        "images_with_valid_persons",
        "person_area",
        "image_sizes",
    ):
        assert data[key] == json.loads(json.dumps(expected[key])), key
    assert (data["images_total"], data["person_annotations"], data["crowd_annotations"]) == (
        79,
        118,
        1,
    )
