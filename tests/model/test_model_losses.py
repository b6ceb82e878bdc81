"""CompositeLoss: ignore semantics, perfect/worst predictions, weights, reconstruction term."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unetbg.model import CompositeLoss


def _batch(seed=0, n=2, h=16, w=20):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 1, h, w, generator=g)
    target = (torch.rand(n, 1, h, w, generator=g) > 0.5).float()
    ignore = (torch.rand(n, 1, h, w, generator=g) > 0.7).float()
    image = torch.rand(n, 3, h, w, generator=g)
    recon = torch.rand(n, 3, h, w, generator=g)
    return logits, target, ignore, image, recon


def test_ignored_pixels_change_neither_loss_nor_gradients():
    loss_fn = CompositeLoss(bce_weight=1.0, dice_weight=1.0, recon_weight=1.0)
    logits, target, ignore, image, recon = _batch()
    ignored = ignore.bool()

    def run(logits, target, recon, image):
        logits = logits.clone().requires_grad_(True)
        recon = recon.clone().requires_grad_(True)
        total, parts = loss_fn({"mask": logits, "reconstruction": recon}, target, ignore, image)
        total.backward()
        return total, parts, logits.grad, recon.grad

    base = run(logits, target, recon, image)
    # Scramble everything at the ignored pixels: prediction, target, image and reconstruction.
    g = torch.Generator().manual_seed(1)
    logits2 = torch.where(ignored, torch.randn(logits.shape, generator=g) * 10, logits)
    target2 = torch.where(ignored, 1 - target, target)
    image2 = torch.where(ignored, torch.rand(image.shape, generator=g), image)
    recon2 = torch.where(ignored, torch.rand(recon.shape, generator=g), recon)
    other = run(logits2, target2, recon2, image2)

    torch.testing.assert_close(other[0], base[0])
    for key in ("bce", "dice", "recon"):
        torch.testing.assert_close(other[1][key], base[1][key])
    torch.testing.assert_close(other[2], base[2])
    assert (base[2][ignored] == 0).all()
    assert (base[3][ignored.expand_as(recon)] == 0).all()
    assert base[2][~ignored].abs().sum() > 0


def test_bce_matches_torch_on_the_valid_pixels():
    logits, target, ignore, _, _ = _batch()
    _, parts = CompositeLoss()({"mask": logits}, target, ignore)
    valid = ~ignore.bool()
    expected = F.binary_cross_entropy_with_logits(logits[valid], target[valid])
    torch.testing.assert_close(parts["bce"], expected)


def test_perfect_prediction_is_near_zero_and_inverted_is_high():
    _, target, ignore, image, _ = _batch()
    perfect = {"mask": (target * 2 - 1) * 30, "reconstruction": image * target}
    total, parts = CompositeLoss(recon_weight=1.0)(perfect, target, ignore, image)
    assert parts["dice"] < 1e-6
    assert parts["bce"] < 1e-6
    assert parts["recon"] == 0
    assert total < 1e-6
    inverted = {"mask": -perfect["mask"]}
    _, parts = CompositeLoss()(inverted, target, ignore)
    assert parts["dice"] > 0.99
    assert parts["bce"] > 20


def test_empty_target_with_empty_prediction_has_zero_dice():
    target = torch.zeros(1, 1, 8, 8)
    _, parts = CompositeLoss()({"mask": torch.full_like(target, -30.0)}, target)
    assert parts["dice"] < 1e-6


def test_weights_combine_the_terms():
    logits, target, ignore, image, recon = _batch()
    outputs = {"mask": logits, "reconstruction": recon}
    _, parts = CompositeLoss(recon_weight=1.0)(outputs, target, ignore, image)
    total, _ = CompositeLoss(0.5, 2.0, 3.0)(outputs, target, ignore, image)
    expected = 0.5 * parts["bce"] + 2.0 * parts["dice"] + 3.0 * parts["recon"]
    torch.testing.assert_close(total, expected)
    # recon_weight=0: the L1 is still reported but does not count.
    total0, parts0 = CompositeLoss()(outputs, target, ignore, image)
    torch.testing.assert_close(total0, parts["bce"] + parts["dice"])
    torch.testing.assert_close(parts0["recon"], parts["recon"])


def test_reconstruction_target_is_the_person_only():
    _, target, _, image, _ = _batch()
    outputs = {"mask": target * 60 - 30, "reconstruction": image.clone()}
    _, parts = CompositeLoss(recon_weight=1.0)(outputs, target, image=image)
    # Background pixels should be black: the error is the mean background intensity.
    expected = (image * (1 - target)).sum() / (3 * target.numel())
    torch.testing.assert_close(parts["recon"], expected)


def test_all_pixels_ignored_gives_a_finite_zero_loss():
    logits, target, _, _, _ = _batch()
    logits.requires_grad_(True)
    total, _ = CompositeLoss()({"mask": logits}, target, torch.ones_like(target))
    total.backward()
    assert total == 0 and (logits.grad == 0).all()


def test_bad_arguments_are_rejected():
    logits, target, _, _, _ = _batch()
    with pytest.raises(ValueError, match="target shape"):
        CompositeLoss()({"mask": logits}, target[:, :, :8])
    with pytest.raises(ValueError, match="recon_weight > 0 needs"):
        CompositeLoss(recon_weight=1.0)({"mask": logits}, target)
    with pytest.raises(ValueError, match="dice_weight must be >= 0"):
        CompositeLoss(dice_weight=-1)
