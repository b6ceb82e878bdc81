"""fit() on the real COCO subset: artifacts, exact resume after cancellation, early stopping."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stopping import StopAfter
from unetbg.cli import main
from unetbg.training.config import resolve_config
from unetbg.training.fit import fit
from unetbg.training.run import lr_lambda

pytestmark = pytest.mark.slow


def _tiny(coco_root, **overrides):
    """Two epochs of two 64 px steps, validated on two images: seconds on a CPU."""
    values = dict(
        coco_root=str(coco_root),
        image_size=64,
        batch_size=4,
        train_limit=8,
        max_steps_per_epoch=2,
        val_limit=2,
        final_evaluation=False,
        device="cpu",
    )
    return resolve_config("smoke", **(values | overrides))


def test_smoke_preset_writes_every_artifact_and_evaluate_agrees(coco_mini, tmp_path):
    cfg = resolve_config("smoke", coco_root=str(coco_mini), device="cpu")
    epochs_seen, checkpoints = [], []
    result = fit(
        cfg,
        tmp_path,
        on_epoch_end=lambda epoch, train, val, lr: epochs_seen.append((epoch, train, val, lr)),
        on_checkpoint=lambda path, epoch, metrics, best: checkpoints.append(
            (path.name, epoch, best)
        ),
    )
    assert result.status == "completed" and result.epochs_completed == cfg.epochs == 2
    assert [e[0] for e in epochs_seen] == [1, 2]
    assert all(e[1]["loss"] > 0 and 0 <= e[2]["iou"] <= 1 and e[3] > 0 for e in epochs_seen)
    assert ("last_model.pth", 1, False) in checkpoints and (
        "last_model.pth",
        2,
        False,
    ) in checkpoints
    assert ("best_model.pth", 1, True) in checkpoints  # the first epoch is always the best so far

    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["preset"] == "smoke" and saved["amp"] is False and saved["num_workers"] == 0

    records = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2]
    for key in ("train_loss", "train_iou", "val_loss", "val_iou", "val_dice", "val_pixel_accuracy"):
        assert all(isinstance(r[key], float) for r in records), key
    with (tmp_path / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["val_iou"]) for r in rows] == [r["val_iou"] for r in records]
    with Image.open(tmp_path / "training_history.png") as plot:
        assert plot.format == "PNG" and plot.width >= 600
    log = (tmp_path / "train.log").read_text()
    assert "epoch 2/2" in log and "original resolution" in log

    last = torch.load(tmp_path / "last_model.pth", weights_only=True)
    state = last["train_state"]
    assert {"optimizer", "scheduler", "scaler", "rng", "progress"} <= set(state)
    assert {"torch", "numpy", "python"} <= set(state["rng"])
    assert last["epoch"] == 2 and state["progress"]["epoch"] == 2
    best = torch.load(tmp_path / "best_model.pth", weights_only=True)
    assert "train_state" not in best and best["preprocessing"]["image_size"] == cfg.image_size

    # The run's own final figures equal what `unetbg evaluate` says of its best checkpoint.
    evaluation = result.evaluation
    assert evaluation["images"] == cfg.val_limit
    assert json.loads((tmp_path / "evaluation.json").read_text()) == evaluation
    cli = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(tmp_path / "best_model.pth"),
            "--coco-root",
            str(coco_mini),
            "--split",
            "val",
            "--limit",
            str(cfg.val_limit),
            "--device",
            "cpu",
            "--json",
            "--batch-size",
            str(cfg.batch_size),
        ],
    )
    assert cli.exit_code == 0, cli.output
    again = json.loads(cli.stdout)
    for key in ("iou", "dice", "pixel_accuracy", "iou_macro", "dice_macro", "images"):
        assert again[key] == pytest.approx(evaluation[key], abs=1e-6), key
    assert again["baseline"] == pytest.approx(evaluation["baseline"])
    # The all-foreground baseline is scored on the same pixels: IoU equals person coverage.
    assert evaluation["baseline"]["iou"] == pytest.approx(evaluation["baseline"]["pixel_accuracy"])

    # The best checkpoint alone is enough to cut out a val image at its original size.
    from unetbg import ModelInference

    photo = sorted((coco_mini / "val2017").glob("*.jpg"))[0]
    cutout = ModelInference(tmp_path / "best_model.pth", device="cpu").remove_background(
        photo, tmp_path / "cutout.png"
    )
    with Image.open(photo) as original, Image.open(tmp_path / "cutout.png") as written:
        assert written.mode == "RGBA" and written.size == original.size == cutout.size


@pytest.fixture(scope="module")
def uninterrupted(coco_mini, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    result = fit(_tiny(coco_mini), run_dir)
    assert result.status == "completed"
    return run_dir, result


# Questions asked in epoch 1: before step 1, before step 2, before the one val batch.
@pytest.mark.parametrize(
    ("stop_at", "where"),
    [(2, "after one step of epoch 1"), (3, "while validating epoch 1"), (4, "between epochs")],
)
def test_resume_after_cancel_gives_the_uninterrupted_weights(
    coco_mini, tmp_path, uninterrupted, stop_at, where
):
    reference_dir, reference = uninterrupted
    cfg = _tiny(coco_mini)
    cancelled = fit(cfg, tmp_path, should_stop=StopAfter(stop_at))
    assert cancelled.status == "cancelled", where
    assert cancelled.evaluation is None and (tmp_path / "last_model.pth").is_file()
    assert cancelled.epochs_completed == (1 if stop_at == 4 else 0)

    resumed = fit(cfg, tmp_path, resume=True)
    assert resumed.status == "completed" and resumed.epochs_completed == 2

    expected = torch.load(reference_dir / "last_model.pth", weights_only=True)["state_dict"]
    got = torch.load(tmp_path / "last_model.pth", weights_only=True)["state_dict"]
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.allclose(got[name].float(), expected[name].float(), atol=1e-6), name
    for mine, theirs in zip(resumed.history, reference.history, strict=True):
        for key in ("train_loss", "train_iou", "val_loss", "val_iou"):
            assert mine[key] == pytest.approx(theirs[key], abs=1e-6), (where, key)
    assert "resumed" in (tmp_path / "train.log").read_text()


def test_resume_with_another_lr_and_weight_decay_uses_them(coco_mini, tmp_path):
    # The optimizer and scheduler state saved in last_model.pth carry the old peak lr and
    # weight decay; the resumed run's config must win over them.
    cfg = _tiny(coco_mini, epochs=3)
    assert fit(cfg, tmp_path, should_stop=StopAfter(4)).epochs_completed == 1
    changed = _tiny(coco_mini, epochs=3, lr=2e-4, weight_decay=0.05)
    assert fit(changed, tmp_path, resume=True).status == "completed"

    steps = cfg.max_steps_per_epoch
    schedule = lr_lambda(3 * steps, cfg.warmup_fraction, cfg.min_lr_ratio)
    records = json.loads((tmp_path / "metrics.json").read_text())
    assert records[0]["lr"] == pytest.approx(cfg.lr * schedule(steps))
    assert [r["lr"] for r in records[1:]] == pytest.approx(
        [2e-4 * schedule(2 * steps), 2e-4 * schedule(3 * steps)]
    )
    saved = torch.load(tmp_path / "last_model.pth", weights_only=True)["train_state"]
    groups = saved["optimizer"]["param_groups"]
    assert [(g["initial_lr"], g["weight_decay"]) for g in groups] == [(2e-4, 0.05)]
    assert "resuming with changed config" in (tmp_path / "train.log").read_text()


def test_early_stopping_ends_the_run_after_patience_epochs_without_gain(coco_mini, tmp_path):
    # min_delta 1 makes any later IoU gain too small, so epoch 2 is the one stale epoch allowed.
    cfg = _tiny(coco_mini, epochs=5, patience=1, min_delta=1.0, max_steps_per_epoch=1)
    result = fit(cfg, tmp_path)
    assert result.status == "early_stopped"
    assert result.epochs_completed == 2 and result.best_epoch == 1
    assert len(json.loads((tmp_path / "metrics.json").read_text())) == 2
