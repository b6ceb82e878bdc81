"""Pieces of the run loop: running metrics, epoch sampler, lr schedule, RNG state, overfitting."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from unetbg.data import CocoPersonDataset, CocoPersons, EvalPreset, PersonFilter
from unetbg.model import CompositeLoss, ModelConfig, SegmentationMeter, create_model
from unetbg.training.engine import RunningMetrics, evaluate, train_one_epoch
from unetbg.training.loaders import EpochSampler
from unetbg.training.run import lr_lambda, rng_state, set_rng_state

SIZE = 64  # overfitting test: small enough for ~15 s on two free cores


def test_running_metrics_match_the_segmentation_meter_and_survive_a_state_round_trip():
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 1, 8, 8, generator=gen)
    target = (torch.rand(3, 1, 8, 8, generator=gen) > 0.5).float()
    ignore = (torch.rand(3, 1, 8, 8, generator=gen) > 0.8).float()
    running = RunningMetrics(0.5)
    running.update({"loss": 1.0}, probs[:2], target[:2], ignore[:2])
    # A cancelled epoch is saved and restored mid-way; the figures must not notice.
    running = RunningMetrics.from_state_dict(running.state_dict())
    running.update({"loss": 3.0}, probs[2:], target[2:], ignore[2:])
    meter = SegmentationMeter(0.5)
    meter.update(probs, target, ignore)
    expected = meter.compute()
    got = running.compute()
    assert got["loss"] == 2.0
    for key in ("iou", "dice", "pixel_accuracy"):
        assert got[key] == pytest.approx(expected[key])


def test_epoch_sampler_order_depends_on_seed_and_epoch_only_and_skips_a_prefix():
    a, b = EpochSampler(20, seed=7), EpochSampler(20, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    order = list(a)
    assert order == list(b) and sorted(order) == list(range(20))
    b.set_epoch(4)
    assert list(b) != order
    a.set_epoch(3, skip=8)
    assert list(a) == order[8:] and len(a) == 12


def test_lr_schedule_warms_up_linearly_then_decays_to_the_floor():
    factor = lr_lambda(total_steps=100, warmup_fraction=0.1, min_lr_ratio=0.01)
    assert [round(factor(s), 3) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    values = [factor(s) for s in range(10, 100)]
    assert all(x >= y for x, y in zip(values, values[1:], strict=False))
    assert factor(100) == pytest.approx(0.01)


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    torch.save({"rng": rng_state()}, tmp_path / "state.pth")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()  # move every generator on
    set_rng_state(torch.load(tmp_path / "state.pth", weights_only=True)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1]) and got[2] == expected[2]


@pytest.mark.slow
def test_model_overfits_four_real_images(coco_mini):
    """Proof that the pieces learn: 4 real COCO images, random encoder, IoU >= 0.9 on them."""
    torch.manual_seed(0)
    persons = CocoPersons(coco_mini, "train", PersonFilter())
    images = Subset(CocoPersonDataset(persons, EvalPreset(SIZE)), range(4))
    batch = next(iter(DataLoader(images, batch_size=4)))
    assert batch["mask"].sum() > 0  # there are people to find
    model = create_model(ModelConfig(encoder_weights=None))
    criterion = CompositeLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    cpu = torch.device("cpu")

    started = time.perf_counter()
    first = evaluate(model, [batch], criterion, cpu)
    scores = []
    for step in range(1, 301):
        train_one_epoch(model, [batch], criterion, optimizer, scheduler, scaler, cpu, total_steps=1)
        if step % 10 == 0:
            scores.append(evaluate(model, [batch], criterion, cpu))
            if scores[-1]["iou"] >= 0.9:
                break
    final = scores[-1]
    print(
        f"overfit: {step} steps, {time.perf_counter() - started:.1f}s, "
        f"IoU {first['iou']:.3f} -> {final['iou']:.3f}, loss {first['loss']:.3f} -> {final['loss']:.3f}"
    )
    assert final["iou"] >= 0.9
    assert final["loss"] < first["loss"]
