"""unetbg.edges: the guided filter that moves a resized mask's outline onto the photo's."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference_fixtures import person_photo
from unetbg.edges import photo_radius, refine_all, refine_probability
from unetbg.model import Preprocessing
from unetbg.model.config import STANDARD_ALPHA_CURVE

NETWORK = Preprocessing(image_size=32, refine_edges=True)


def _disc_photo(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc (the person) on a darker, noisy background; its true mask."""
    yy, xx = np.mgrid[:size, :size]
    truth = (yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2 < (size * 0.3) ** 2
    rng = np.random.default_rng(0)
    gray = np.where(truth, 200.0, 60.0) + rng.normal(0, 6, truth.shape)
    rgb = np.repeat(gray.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return rgb, truth


def _coarse(truth: np.ndarray, network: int) -> np.ndarray:
    """The mask as a network at ``network`` px sees it, resized back (bilinear), as
    ``restore_probabilities`` does: the outline is blurred over several photo pixels."""
    small = Image.fromarray(truth.astype(np.float32)).resize((network, network), Image.BOX)
    big = small.resize(truth.shape[::-1], Image.Resampling.BILINEAR)
    return np.asarray(big, dtype=np.float32)


def _iou(prob: np.ndarray, truth: np.ndarray) -> float:
    pred = prob >= 0.5
    return (pred & truth).sum() / (pred | truth).sum()


def test_outline_moves_onto_the_photos_edge() -> None:
    rgb, truth = _disc_photo()
    coarse = _coarse(truth, NETWORK.image_size)
    before = rgb.copy(), coarse.copy()
    refined = refine_probability(coarse, rgb, NETWORK)
    assert refined.shape == truth.shape and refined.dtype == np.float32
    assert refined.min() >= 0.0 and refined.max() <= 1.0
    # Wrong pixels along the outline: the coarse mask's, then the refined one's.
    assert ((refined >= 0.5) != truth).sum() < 0.5 * ((coarse >= 0.5) != truth).sum()
    assert _iou(refined, truth) > _iou(coarse, truth)
    np.testing.assert_array_equal(rgb, before[0])  # inputs untouched
    np.testing.assert_array_equal(coarse, before[1])


def test_a_probability_without_outline_stays_as_it_is() -> None:
    # Least squares of a constant is that constant, whatever the photo's edges: nothing
    # is drawn where the mask has no outline to move (catches a mis-scaled box filter).
    photo = person_photo(120, 90)
    for value in (0.0, 0.3, 1.0):
        flat = np.full((90, 120), value, np.float32)
        np.testing.assert_allclose(refine_probability(flat, photo, NETWORK), value, atol=1e-4)


def test_radius_follows_the_letterbox_scale() -> None:
    pre = Preprocessing(image_size=192, edge_radius=2.0)
    assert photo_radius(480, 640, pre) == 7  # 640 / 192 × 2 = 6.7
    assert photo_radius(3000, 4000, pre) == 42
    assert photo_radius(40, 30, pre) == 1  # smaller than the network: at least 1
    wide = Preprocessing(image_size=192, edge_radius=4.0)
    assert photo_radius(480, 640, wide) == 13


def test_sizes_must_match() -> None:
    with pytest.raises(ValueError, match="probability map is 20×10 but the photo is 30×10"):
        refine_probability(np.zeros((10, 20), np.float32), person_photo(30, 10), NETWORK)


def test_preprocessing_fields_are_checked_and_overridden() -> None:
    old = Preprocessing.from_dict({"image_size": 192, "flip_average": True})
    assert old.refine_edges is False  # checkpoints saved before it: off
    assert (old.edge_radius, old.edge_eps) == (2.0, 1e-3)
    on = old.overridden(refine_edges=True, flip_average=None)
    assert on.refine_edges is True and on.flip_average is True  # None keeps the field
    assert on.overridden(refine_edges=False).refine_edges is False
    for bad in ({"refine_edges": "yes"}, {"refine_edges": 1}):
        with pytest.raises(ValueError, match="refine_edges must be true or false"):
            Preprocessing(**bad)
    for name in ("edge_radius", "edge_eps"):
        for value in (0, -1.0, float("nan"), float("inf"), True, "2"):
            with pytest.raises(ValueError, match=f"{name} must be a finite number > 0"):
                Preprocessing(**{name: value})
    assert Preprocessing(edge_radius=3).edge_radius == 3.0


def test_refine_all_follows_the_preprocessing() -> None:
    rgb, truth = _disc_photo(128)
    coarse = _coarse(truth, NETWORK.image_size)
    (same,) = refine_all([coarse], [rgb], NETWORK.overridden(refine_edges=False))
    assert same is coarse  # off: nothing computed, nothing copied
    (refined,) = refine_all([coarse], [rgb], NETWORK)
    np.testing.assert_array_equal(refined, refine_probability(coarse, rgb, NETWORK))
    with pytest.raises(ValueError, match="zip"):
        refine_all([coarse], [], NETWORK)


def test_alpha_curve_clears_the_veil_and_keeps_the_half_cut() -> None:
    rgb, truth = _disc_photo(128)
    coarse = _coarse(truth, NETWORK.image_size)
    haze = np.clip(coarse + 0.04, 0, 1).astype(np.float32)  # a faint veil everywhere
    curved = NETWORK.overridden(refine_edges=False, alpha_low=0.1, alpha_high=0.9, alpha_curve=True)
    (out,) = refine_all([haze], [rgb], curved)
    assert (haze > 0).all() and (out[haze <= 0.1] == 0).all()
    assert (out[haze >= 0.9] == 1).all()
    np.testing.assert_array_equal(out >= 0.5, haze >= 0.5)  # the hard mask is unchanged
    soft = (haze > 0.15) & (haze < 0.85)
    assert ((out[soft] > 0) & (out[soft] < 1)).all()  # the soft edge stays soft
    # After the guided filter, not before: the refined veil is cleared too.
    both = NETWORK.overridden(alpha_low=0.1, alpha_high=0.9, alpha_curve=True)
    (final,) = refine_all([haze], [rgb], both)
    refined = refine_probability(haze, rgb, NETWORK)
    np.testing.assert_allclose(final, np.clip((refined - 0.1) / 0.8, 0, 1), atol=1e-6)
    for low, high in ((0.5, 0.5), (-0.1, 0.9), (0.2, 1.2), (True, 0.9)):
        with pytest.raises(ValueError, match="alpha_low and alpha_high"):
            Preprocessing(alpha_low=low, alpha_high=high)
    old = Preprocessing.from_dict({"image_size": 192})
    assert (old.alpha_low, old.alpha_high, old.alpha_curve) == (0.0, 1.0, False)  # unchanged
    assert old.curve_points() is None and refine_all([haze], [rgb], old)[0] is haze


def test_alpha_curve_switch_points_and_older_checkpoints() -> None:
    rgb, truth = _disc_photo(128)
    haze = np.clip(_coarse(truth, NETWORK.image_size) + 0.04, 0, 1).astype(np.float32)
    plain = NETWORK.overridden(refine_edges=False)
    # Asked for on a checkpoint that names no points: the standard curve, 0.1 to 0.9.
    standard = plain.overridden(alpha_curve=True)
    assert standard.curve_points() == STANDARD_ALPHA_CURVE == (0.1, 0.9)
    (out,) = refine_all([haze], [rgb], standard)
    np.testing.assert_allclose(out, np.clip((haze - 0.1) / 0.8, 0, 1), atol=1e-6)
    # The checkpoint's own points, and switched off (the raw soft alpha).
    own = plain.overridden(alpha_low=0.2, alpha_high=0.8, alpha_curve=True)
    assert own.curve_points() == (0.2, 0.8)
    assert own.overridden(alpha_curve=False).curve_points() is None
    # Written with points before the switch existed: the points are on.
    earlier = Preprocessing.from_dict({"image_size": 192, "alpha_low": 0.1, "alpha_high": 0.9})
    assert earlier.alpha_curve and earlier.curve_points() == (0.1, 0.9)
    assert Preprocessing.from_dict(own.to_dict()) == own
    with pytest.raises(ValueError, match="alpha_curve must be true or false"):
        Preprocessing(alpha_curve="yes")
