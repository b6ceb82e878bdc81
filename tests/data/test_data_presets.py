"""Train/Eval presets: image, mask and ignore stay aligned; letterbox matches predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from unetbg.data import EvalPreset, TrainPreset
from unetbg.model import Preprocessing, letterbox_geometry


def _scene(h: int = 90, w: int = 130) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A white asymmetric 'person' (L shape) and a separate ignore block on black."""
    mask = np.zeros((h, w), np.uint8)
    mask[10:80, 15:40] = 1
    mask[60:80, 40:75] = 1
    ignore = np.zeros((h, w), np.uint8)
    ignore[15:45, 90:120] = 1
    return mask, ignore, np.repeat((mask * 255)[..., None], 3, axis=2).astype(np.uint8)


def _agreement(raw: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> float:
    """Fraction of labelled pixels (away from edges) where brightness matches the target."""
    gray = raw.mean(0)
    t = target[0] > 0.5
    # Edges blur under resizing/blur; compare only pixels whose 5×5 neighbourhood agrees.
    pooled = torch.nn.functional.avg_pool2d(target.float()[None], 5, 1, 2)[0, 0]
    core = ((pooled == 0) | (pooled == 1)) & (valid[0] > 0.5)
    assert core.sum() > 200
    threshold = (gray[t & core].mean() + gray[~t & core].mean()) / 2
    return float(((gray > threshold) == t)[core].float().mean())


@pytest.mark.parametrize("wide", [False, True], ids=["standard", "wide"])
@pytest.mark.parametrize("seed", range(6))
def test_train_preset_keeps_mask_and_ignore_aligned(seed, wide):
    mask, ignore, image = _scene()
    out = TrainPreset(96, seed=seed, wide=wide)(image, mask, ignore)
    assert out["image"].shape == (3, 96, 96) and out["mask"].shape == (1, 96, 96)
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    if out["mask"].sum() > 50:
        not_ignored = 1 - out["ignore"]
        assert _agreement(out["raw"], out["mask"], not_ignored) > 0.98
    # Same seed, the ignore block painted instead: the ignore output must sit on it.
    ignore_image = np.repeat((ignore * 255)[..., None], 3, axis=2).astype(np.uint8)
    again = TrainPreset(96, seed=seed, wide=wide)(ignore_image, mask, ignore)
    torch.testing.assert_close(again["ignore"], out["ignore"])
    # Same seed, no ignore block at all: what is ignored then is the padding alone.
    padding = TrainPreset(96, seed=seed, wide=wide)(ignore_image, mask, ignore * 0)["ignore"]
    block = again["ignore"] - padding
    if block.sum() > 50:
        assert _agreement(again["raw"], block, 1 - padding) > 0.98


def test_eval_preset_letterbox_matches_predict_geometry():
    mask, ignore, image = _scene(90, 130)
    for size in (64, 96, 128):
        out = EvalPreset(size)(image, mask, ignore)
        new_h, new_w, top, left = letterbox_geometry(90, 130, size)
        expected_pad = torch.ones(size, size)
        expected_pad[top : top + new_h, left : left + new_w] = 0
        # ignore = the scene's ignore block OR padding; outside the block it is exactly the pad.
        outside_block = out["ignore"][0] * (1 - expected_pad)
        assert (out["ignore"][0] >= expected_pad).all()
        assert outside_block.sum() > 0  # the ignore block itself survives
        assert not out["mask"][0][expected_pad.bool()].any()
        assert _agreement(out["raw"], out["mask"], 1 - out["ignore"]) > 0.99
    portrait = EvalPreset(64)(image.transpose(1, 0, 2).copy(), mask.T.copy(), ignore.T.copy())
    new_h, new_w, top, left = letterbox_geometry(130, 90, 64)
    assert left == (64 - new_w) // 2 and portrait["ignore"][0, :, :left].all()
    assert not portrait["ignore"][0, 40, left : left + new_w - 1].any()


def test_normalisation_uses_model_preprocessing():
    mask, ignore, image = _scene()
    out = EvalPreset(64)(image, mask, ignore)
    pre = Preprocessing()
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    torch.testing.assert_close(out["image"], (out["raw"] - mean) / std)
    assert out["raw"].min() >= 0.0 and out["raw"].max() <= 1.0
    custom = EvalPreset(64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(image, mask, ignore)
    torch.testing.assert_close(custom["image"], out["raw"] * 2 - 1)


def test_train_preset_is_seeded_and_random():
    mask, ignore, image = _scene()
    a = TrainPreset(64, seed=3)(image, mask, ignore)
    b = TrainPreset(64, seed=3)(image, mask, ignore)
    c = TrainPreset(64, seed=4)(image, mask, ignore)
    torch.testing.assert_close(a["raw"], b["raw"])
    assert not torch.equal(a["raw"], c["raw"])


def test_bad_inputs_are_refused_and_not_modified():
    mask, ignore, image = _scene()
    before = image.copy()
    EvalPreset(64)(image, mask, ignore)
    np.testing.assert_array_equal(image, before)
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        EvalPreset(64)(image.astype(np.float32), mask, ignore)
    with pytest.raises(ValueError, match="must match the image"):
        EvalPreset(64)(image, mask[:10], ignore)
    with pytest.raises(ValueError, match="at least 32"):
        EvalPreset(16)
    with pytest.raises(ValueError, match="std > 0"):
        EvalPreset(64, mean=(0, 0, 0), std=(1, 0, 1))


class _SameImage(Dataset):
    def __init__(self, preset):
        self.preset = preset
        self.mask, self.ignore, self.image = _scene()

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return self.preset(self.image, self.mask, self.ignore)["raw"]


def test_dataloader_workers_get_different_augmentations():
    # Forked workers inherit one random state; the preset reseeds per worker.
    loader = DataLoader(
        _SameImage(TrainPreset(64, seed=0)),
        batch_size=1,
        num_workers=2,
        generator=torch.Generator().manual_seed(0),
    )
    first, second = list(loader)
    assert not torch.equal(first, second)


def _largest_person_share(max_zoom: float, seeds: range) -> float:
    """The largest share of a crop covered by a person that fills a tenth of its photo."""
    mask = np.zeros((100, 100), np.uint8)
    mask[40:60, 45:95] = 1  # 10 % of the photo
    image = np.repeat((mask * 255)[..., None], 3, axis=2).astype(np.uint8)
    shares = [
        float(TrainPreset(64, seed=seed, max_zoom=max_zoom)(image, mask, 0 * mask)["mask"].mean())
        for seed in seeds
    ]
    return max(shares)


def test_max_zoom_bounds_how_far_training_crops_zoom_in():
    # Zoomed by z, the person covers about 10 % * z² of the crop (less when cut by it).
    no_zoom, default, far = (_largest_person_share(z, range(40)) for z in (1.0, 1.6, 3.0))
    assert no_zoom < 0.115 and default < 0.1 * 1.6**2 + 0.02
    assert far > 0.1 * 1.6**2 + 0.05  # beyond what the default zoom can reach
    with pytest.raises(ValueError, match="max_zoom must be >= 1, got 0.5"):
        TrainPreset(64, max_zoom=0.5)
