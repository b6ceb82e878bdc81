"""fit() on several sources: per-source validation and evaluation, EMA, exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from maskgen import make_mask_folder
from stopping import StopAfter
from unetbg.cli import main
from unetbg.data.folders import MaskFolder
from unetbg.training.config import resolve_config
from unetbg.training.evaluation import evaluate_checkpoint
from unetbg.training.fit import fit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return make_mask_folder(root / "street", count=24, seed=1), make_mask_folder(
        root / "scenes", count=16, seed=2
    )


def _mixed(folders, **overrides):
    values = dict(
        data=(f"masks:{folders[0]}:1", f"masks:{folders[1]}:0.5"),
        val_percent=25,
        samples_per_epoch=8,
        image_size=64,
        batch_size=4,
        max_steps_per_epoch=None,
        val_limit=None,
        copy_paste=0.5,
        ema_decay=0.9,
        final_evaluation=True,
        device="cpu",
    )
    return resolve_config("smoke", **(values | overrides))


def test_mixed_run_reports_each_source_and_resumes_exactly(folders, tmp_path):
    reference = fit(_mixed(folders), tmp_path / "ref")
    assert reference.status == "completed"
    record = reference.history[-1]
    for name in ("street", "scenes"):
        assert 0 <= record[f"val_{name}_iou"] <= 1
    assert record["val_mean_iou"] == pytest.approx(
        (record["val_street_iou"] + record["val_scenes_iou"]) / 2
    )
    evaluation = reference.evaluation
    assert set(evaluation["sources"]) == {"street", "scenes"}
    assert evaluation["mean_iou"] == pytest.approx(
        sum(v["iou"] for v in evaluation["sources"].values()) / 2
    )
    saved = json.loads((tmp_path / "ref" / "config.json").read_text())
    assert all(spec.startswith("masks:/") for spec in saved["data"])  # absolute paths

    # Stop in epoch 1 after one step, then resume: the raw and the averaged weights end
    # up exactly where the uninterrupted run's did.
    cancelled = fit(_mixed(folders), tmp_path / "cut", should_stop=StopAfter(2))
    assert cancelled.status == "cancelled"
    resumed = fit(_mixed(folders), tmp_path / "cut", resume=True)
    assert resumed.status == "completed"
    # The same config read back from config.json (lists for tuples) is no change.
    assert "changed config" not in (tmp_path / "cut" / "train.log").read_text()
    for name in ("last_model.pth", "best_model.pth"):
        want = torch.load(tmp_path / "ref" / name, weights_only=True)["state_dict"]
        got = torch.load(tmp_path / "cut" / name, weights_only=True)["state_dict"]
        for key in want:
            assert torch.equal(want[key], got[key]), (name, key)


def test_evaluate_command_scores_coco_and_mask_folders(folders, coco_root, tmp_path):
    run = fit(_mixed(folders, epochs=1, final_evaluation=False), tmp_path)
    # One epoch: best_model.pth holds the weight average, last_model.pth the raw weights.
    best = torch.load(run.best_checkpoint, weights_only=True)["state_dict"]
    last = torch.load(run.last_checkpoint, weights_only=True)
    average = last["train_state"]["ema"]["weights"]
    assert all(torch.equal(best[k], average[k]) for k in best)
    assert any(not torch.equal(best[k], last["state_dict"][k]) for k in best)
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(run.best_checkpoint),
            "--coco-root",
            str(coco_root),
            "--limit",
            "4",
            "--data",
            f"masks:{folders[1]}",
            "--val-percent",
            "25",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert list(figures["sources"]) == [coco_root.name, "scenes"]
    direct = evaluate_checkpoint(
        run.best_checkpoint, coco_root, limit=4, data=(f"masks:{folders[1]}",), val_percent=25
    )
    assert figures["iou"] == pytest.approx(direct["iou"])
    held_out = len(MaskFolder(folders[1], "val", 25))
    assert figures["sources"]["scenes"]["images"] == min(4, held_out) > 0
    assert figures["sources"][coco_root.name]["images"] == 4


def test_a_run_can_start_from_a_checkpoint_and_swap_backdrops(folders, tmp_path):
    first = fit(_mixed(folders, epochs=1, final_evaluation=False, ema_decay=None), tmp_path / "a")
    start = torch.load(first.best_checkpoint, weights_only=True)["state_dict"]
    # Zero steps of training beyond the start: the new run's epoch-0 weights are the file's.
    cfg = _mixed(
        folders,
        epochs=1,
        final_evaluation=False,
        init_weights=str(first.best_checkpoint),
        background_swap=0.5,
        augment_range="wide",
        lr=1e-12,
        ema_decay=None,
    )
    second = fit(cfg, tmp_path / "b")
    got = torch.load(second.best_checkpoint, weights_only=True)["state_dict"]
    for key, value in start.items():
        if value.is_floating_point() and "running" not in key:
            assert torch.allclose(got[key], value, atol=1e-6), key
    assert "weights initialised from" in (tmp_path / "b" / "train.log").read_text()
    # Another architecture is refused with both configs named, before any step.
    with pytest.raises(Exception, match="another model config"):
        fit(
            _mixed(folders, init_weights=str(first.best_checkpoint), attention=None),
            tmp_path / "c",
        )


def test_new_recipe_fields_are_validated():
    with pytest.raises(ValueError, match="background_swap must be in"):
        resolve_config("smoke", data=("masks:/x",), background_swap=1.5)
    with pytest.raises(ValueError, match="background_swap needs sources"):
        resolve_config("smoke", background_swap=0.5)
    with pytest.raises(ValueError, match="augment_range must be one of standard, wide"):
        resolve_config("smoke", augment_range="extreme")
    with pytest.raises(ValueError, match="swap_hard_cases must be in"):
        resolve_config("smoke", data=("masks:/x",), background_swap=0.5, swap_hard_cases=2)
    with pytest.raises(ValueError, match="swap_hard_cases needs background_swap > 0"):
        resolve_config("smoke", data=("masks:/x",), swap_hard_cases=0.3)


def test_swap_objects_needs_a_swap_and_a_coco_source_that_trains(tmp_path):
    with pytest.raises(ValueError, match="swap_objects needs background_swap > 0"):
        resolve_config("smoke", data=(f"coco:{tmp_path}",), swap_objects=True)
    with pytest.raises(ValueError, match="swap_objects needs a COCO source that trains"):
        resolve_config(
            "smoke",
            data=(f"masks:{tmp_path}", f"coco:{tmp_path}:0"),
            background_swap=0.5,
            swap_objects=True,
        )
    cfg = resolve_config(
        "smoke", data=(f"coco:{tmp_path}",), background_swap=0.5, swap_objects=True
    )
    assert cfg.swap_objects
