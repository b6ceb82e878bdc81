"""Metrics: confusion counts, micro/macro, ignore, threshold, empty union, COCO vs pycocotools."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from unetbg.model import SegmentationMeter, confusion


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)[None, None]


def test_confusion_counts_and_ignore():
    pred = _t([[1, 1, 0, 0]])
    target = _t([[1, 0, 1, 0]])
    assert [int(c) for c in confusion(pred, target)] == [1, 1, 1, 1]
    ignore = _t([[0, 1, 0, 1]])  # drops the fp and the tn
    assert [int(c) for c in confusion(pred, target, ignore)] == [1, 0, 1, 0]


def test_micro_and_macro_differ_as_defined():
    meter = SegmentationMeter()
    # Image A: 1 tp, 1 fp, 2 tn (IoU 1/2). Image B: 3 tp, 1 fn (IoU 3/4).
    probs = torch.tensor([[[[0.9, 0.8, 0.1, 0.2]]], [[[0.9, 0.9, 0.9, 0.1]]]])
    target = torch.tensor([[[[1.0, 0, 0, 0]]], [[[1.0, 1, 1, 1]]]])
    meter.update(probs, target)
    m = meter.compute()
    assert m["images"] == 2
    assert m["iou"] == pytest.approx(4 / 6)
    assert m["iou_macro"] == pytest.approx((1 / 2 + 3 / 4) / 2)
    assert m["dice"] == pytest.approx(8 / 10)
    assert m["dice_macro"] == pytest.approx((2 / 3 + 6 / 7) / 2)
    assert m["pixel_accuracy"] == pytest.approx(6 / 8)
    assert m["pixel_accuracy_macro"] == pytest.approx((3 / 4 + 3 / 4) / 2)


def test_threshold_is_configurable():
    probs, target = _t([[0.3, 0.6]]), _t([[1, 1]])
    low, high = SegmentationMeter(threshold=0.25), SegmentationMeter(threshold=0.7)
    low.update(probs, target)
    high.update(probs, target)
    assert low.compute()["iou"] == 1.0
    assert high.compute()["iou"] == 0.0


def test_empty_union_counts_as_perfect_and_false_positive_as_zero():
    meter = SegmentationMeter()
    meter.update([np.zeros((4, 4), np.float32)], [np.zeros((4, 4), np.uint8)])
    m = meter.compute()
    assert m["iou"] == m["iou_macro"] == m["dice_macro"] == 1.0
    fp = np.zeros((4, 4), np.float32)
    fp[0, 0] = 1.0
    meter.update([fp], [np.zeros((4, 4), np.uint8)])
    m = meter.compute()
    assert m["iou"] == 0.0  # micro: the only positive pixel is a false positive
    assert m["iou_macro"] == 0.5


def test_all_ignored_image_is_left_out_of_macro():
    meter = SegmentationMeter()
    full = np.ones((3, 5), np.float32)
    meter.update([full, full], [full, np.zeros_like(full)], [np.zeros_like(full), full])
    m = meter.compute()
    assert m["images"] == 2
    assert m["iou_macro"] == 1.0 and m["pixel_accuracy_macro"] == 1.0


def test_lists_of_arrays_of_different_sizes_and_bad_input():
    meter = SegmentationMeter()
    meter.update([np.ones((3, 5)), np.ones((7, 2))], [np.ones((3, 5)), np.zeros((7, 2))])
    assert meter.compute()["images"] == 2
    with pytest.raises(ValueError, match="lengths must match"):
        meter.update([np.ones((3, 5))], [])
    with pytest.raises(ValueError, match="target shape"):
        meter.update([np.ones((3, 5))], [np.ones((5, 3))])
    with pytest.raises(ValueError, match="before any update"):
        SegmentationMeter().compute()


def _person_masks(root):
    coco = COCO(str(root / "annotations" / "instances_val2017.json"))
    person = coco.getCatIds(catNms=["person"])
    cases = []
    for image_id in sorted(coco.getImgIds(catIds=person)):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, catIds=person, iscrowd=False))
        if len(anns) >= 2:
            masks = [coco.annToMask(a) for a in anns]
            cases.append((masks[0], masks[1]))  # two different persons (often disjoint)
            cases.append((masks[0], np.maximum.reduce(masks)))  # one person vs the union
        if len(cases) >= 8:
            break
    return cases


# pycocotools' own numpy-2 deprecation warning, not ours.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_iou_interval_spreads_with_the_photos_and_repeats():
    one = SegmentationMeter()
    one.update([np.array([[0.9, 0.9, 0.1, 0.1]])], [np.array([[1, 0, 1, 0]])])  # IoU 1/3
    assert one.iou_interval() == pytest.approx((1 / 3, 1 / 3))  # one photo: nothing to vary

    # A photo scored 0 and one scored 1, with unions of the same size: a draw takes both
    # twice (IoU 0 or 1, a quarter of draws each) or one of each (1/2).
    two = SegmentationMeter()
    two.update(
        [np.array([[0.9, 0.9]]), np.array([[0.9, 0.9]])],
        [np.array([[0, 0]]), np.array([[1, 1]])],
    )
    assert two.compute()["iou"] == pytest.approx(0.5)
    assert two.iou_interval(level=0.9) == (0.0, 1.0)
    assert two.iou_interval(level=0.2) == (0.5, 0.5)
    assert two.iou_interval(resamples=300, seed=3) == two.iou_interval(resamples=300, seed=3)

    with pytest.raises(ValueError, match="level must be in"):
        two.iou_interval(level=1.0)
    with pytest.raises(ValueError, match="before any update"):
        SegmentationMeter().iou_interval()


def test_iou_matches_pycocotools_on_real_coco_masks(coco_mini):
    cases = _person_masks(coco_mini)
    assert len(cases) >= 8
    expected = []
    for pred, target in cases:
        rles = mask_utils.encode(np.asfortranarray(np.stack([pred, target], axis=-1)))
        expected.append(float(mask_utils.iou([rles[0]], [rles[1]], [0])[0, 0]))
        single = SegmentationMeter()
        single.update([pred.astype(np.float32)], [target])
        assert single.compute()["iou"] == pytest.approx(expected[-1], abs=1e-9)
    meter = SegmentationMeter()
    meter.update([p.astype(np.float32) for p, _ in cases], [t for _, t in cases])
    m = meter.compute()
    assert m["iou_macro"] == pytest.approx(float(np.mean(expected)), abs=1e-9)
    assert sum(0 < e < 1 for e in expected) >= 4  # partial overlaps, not just 0 or 1
    assert not math.isnan(m["iou"])
