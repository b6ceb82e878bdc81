"""A teacher's soft masks as a second target (``--distill-from``): which samples it
teaches, what its term pulls towards, and a run that uses it."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from maskgen import make_mask_folder
from unetbg.model import ModelConfig, create_model
from unetbg.training.config import resolve_config
from unetbg.training.distill import Distiller
from unetbg.training.fit import fit


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(ModelConfig(encoder_weights=None)).eval()


def _batch(n: int = 4, size: int = 64) -> dict:
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, 16:48, 20:44] = 1
    return {
        "image": torch.randn(n, 3, size, size),
        "mask": mask,
        "ignore": torch.zeros(n, 1, size, size),
        "source": torch.tensor([0, 1, 2, 0]),
        "swapped": torch.tensor([False, False, False, True]),
    }


def test_the_teacher_skips_swapped_samples_other_sources_and_photos_without_people():
    batch = _batch()
    everyone = Distiller(_model(0), 1.0)
    assert everyone.picked(batch).tolist() == [True, True, True, False]  # swapped: no
    some = Distiller(_model(0), 1.0, sources=[0, 2])
    assert some.picked(batch).tolist() == [True, False, True, False]
    batch["mask"][2] = 0  # a photo without people: its label is certain
    assert some.picked(batch).tolist() == [True, False, False, False]
    # A run on one COCO root has no tags: every sample with a person is taught.
    untagged = {k: v for k, v in batch.items() if k not in ("source", "swapped")}
    assert everyone.picked(untagged).tolist() == [True, True, False, True]
    with pytest.raises(ValueError, match="distill weight must be >= 0"):
        Distiller(_model(0), -1.0)


def test_the_term_pulls_towards_the_teacher_and_ignores_masked_pixels():
    batch = _batch()
    student = _model(1)
    # The student is its own teacher: BCE against its own probabilities is at its minimum.
    same = Distiller(copy.deepcopy(student), 1.0)
    logits = student(batch["image"])["mask"]
    (grad,) = torch.autograd.grad(same.loss(batch, batch["image"], logits, batch["ignore"]), logits)
    assert grad.abs().max() < 1e-7
    # Another teacher pulls, on the taught samples only and never on ignored pixels.
    other = Distiller(_model(2), 1.0)
    batch["ignore"][:, :, :, :32] = 1
    logits = student(batch["image"])["mask"]
    loss = other.loss(batch, batch["image"], logits, batch["ignore"])
    (grad,) = torch.autograd.grad(loss, logits)
    assert loss > 0 and grad[:3, :, :, 32:].abs().sum() > 0
    assert grad[:, :, :, :32].abs().sum() == 0  # ignored pixels
    assert grad[3].abs().sum() == 0  # the swapped sample
    # A batch with nothing to teach costs nothing and runs no teacher.
    batch["swapped"][:] = True
    assert other.loss(batch, batch["image"], logits, batch["ignore"]) == 0


def test_options_are_checked_before_a_run(tmp_path):
    data = (f"masks:{tmp_path}/a", f"masks:{tmp_path}/b")
    with pytest.raises(ValueError, match="distill_weight must be >= 0"):
        resolve_config("smoke", data=data, distill_from="default", distill_weight=-0.5)
    with pytest.raises(ValueError, match="distill_sources needs a teacher"):
        resolve_config("smoke", data=data, distill_sources=("a",))
    with pytest.raises(ValueError, match="distill_sources names no training source: c"):
        resolve_config("smoke", data=data, distill_from="default", distill_sources=("c",))


@pytest.mark.slow
def test_a_run_learns_from_a_teacher_on_unswapped_samples(tmp_path, monkeypatch):
    folders = [make_mask_folder(tmp_path / n, count=12, seed=s) for n, s in (("a", 1), ("b", 2))]
    common = dict(
        data=tuple(f"masks:{f}" for f in folders),
        val_percent=25,
        samples_per_epoch=8,
        image_size=64,
        batch_size=4,
        epochs=1,
        final_evaluation=False,
        device="cpu",
    )
    first = fit(resolve_config("smoke", **common), tmp_path / "first")
    monkeypatch.chdir(first.run_dir)  # a relative teacher path is recorded absolute
    cfg = resolve_config(
        "smoke",
        **common,
        distill_from="best_model.pth",
        distill_weight=2.0,
        distill_sources=("b",),
        background_swap=0.5,
        swap_sources=("a",),
    )
    run = fit(cfg, tmp_path / "taught")
    record = run.history[-1]
    assert record["train_loss_distill"] > 0
    # The total is the labels' terms plus the teacher's, weighted.
    assert record["train_loss"] == pytest.approx(
        record["train_loss_bce"] + record["train_loss_dice"] + 2.0 * record["train_loss_distill"]
    )
    saved = json.loads((tmp_path / "taught" / "config.json").read_text())
    assert saved["distill_from"] == str(first.run_dir / "best_model.pth")
    assert (
        "distill_from: " + str(first.run_dir / "best_model.pth")
        in (tmp_path / "taught" / "train.log").read_text()
    )
    # A teacher of another architecture is refused before any step.
    with pytest.raises(Exception, match="distill_from has another model config"):
        fit(
            resolve_config(
                "smoke", **common, distill_from=str(first.best_checkpoint), attention=None
            ),
            tmp_path / "refused",
        )
