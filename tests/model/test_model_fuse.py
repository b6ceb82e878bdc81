"""unetbg.model.fuse: the folded network gives the unfused model's outputs on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inference_fixtures import calibrated_model, coco_photos
from unetbg.model import ModelConfig, Preprocessing, predict_probabilities
from unetbg.model.fuse import (
    FusedAttentionUNet,
    fold_bn,
    fuse_for_inference,
    upsample_conv_as_transposed,
)

SIZE = 96  # letterbox size of these tests


@pytest.fixture(scope="module")
def photos(coco_mini: Path) -> list[np.ndarray]:
    return coco_photos(coco_mini, 6)


@pytest.mark.parametrize(
    "config",
    [ModelConfig(), ModelConfig(decoder_channels=(32, 16, 16, 8, 8), attention=None)],
    ids=["default", "small-no-attention"],
)
@pytest.mark.parametrize(
    ("split", "transposed"),
    [(True, True), (True, False), (False, True)],
    ids=["default", "split-upsample-conv", "fold-only"],
)
def test_fused_matches_unfused_on_real_photos(photos, config, split, transposed) -> None:
    model = calibrated_model(config, photos)
    fused = fuse_for_inference(model, split=split, transposed=transposed)
    assert isinstance(fused, FusedAttentionUNet)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    prep = Preprocessing(image_size=SIZE)
    expected = predict_probabilities(model, photos, prep, "cpu", batch_size=3)
    got = predict_probabilities(fused, photos, prep, "cpu", batch_size=3)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(expected, got, strict=True))
    assert worst <= 1e-3, worst
    # Not vacuous: the model's outputs vary across pixels and photos.
    assert np.std(np.concatenate([e.ravel() for e in expected])) > 1e-3


def test_fusing_leaves_the_trained_model_alone(photos) -> None:
    model = calibrated_model(ModelConfig(decoder_channels=(32, 16, 16, 8, 8)), photos)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fuse_for_inference(model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(TypeError, match="AttentionUNet"):
        fuse_for_inference(nn.Conv2d(3, 3, 1))  # type: ignore[arg-type]


def test_fold_bn_and_transposed_upsampling_are_exact() -> None:
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(5, 7, 3, padding=1, bias=False), nn.BatchNorm2d(7).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(2, 5, 9, 11)
    torch.testing.assert_close(fold_bn(conv, bn)(x), bn(conv(x)), atol=1e-5, rtol=1e-5)

    conv = nn.Conv2d(6, 4, 3, padding=1)
    for h, w in ((1, 1), (3, 5), (12, 7)):
        x = torch.randn(2, 6, h, w)
        expected = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        got = upsample_conv_as_transposed(conv)(x)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="3×3"):
        upsample_conv_as_transposed(nn.Conv2d(6, 4, 1))
