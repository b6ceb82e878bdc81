"""CocoPersons and PersonFilter on the real COCO subset and on generated edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from cocogen import make_coco
from unetbg.data import CocoError, CocoPersons, PersonFilter, UnreadableImageError
from unetbg.data.coco import annotation_mask


@pytest.fixture(scope="module")
def mini_val(coco_mini):
    """Direct pycocotools view of the real val annotations (the independent reference)."""
    return COCO(str(coco_mini / "annotations" / "instances_val2017.json"))


def _union(coco: COCO, ann_ids: list[int], h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w), np.uint8)
    for ann in coco.loadAnns(ann_ids):
        out |= coco.annToMask(ann)
    return out


def test_mask_is_union_of_person_instances_like_pycocotools(coco_mini, mini_val):
    persons = CocoPersons(coco_mini, "val")
    assert persons.annotation_file.name == "person_keypoints_val2017.json"
    assert sorted(persons.image_ids) == sorted(mini_val.getImgIds())
    checked = 0
    for image_id in persons.image_ids:
        info = mini_val.imgs[image_id]
        ids = mini_val.getAnnIds(imgIds=[image_id], catIds=[1], iscrowd=False)
        expected = _union(mini_val, ids, info["height"], info["width"])
        mask, ignore = persons.masks(image_id)
        assert mask.dtype == np.uint8 and mask.shape == (info["height"], info["width"])
        np.testing.assert_array_equal(mask, expected)
        assert not (mask & ignore).any()
        checked += int(expected.any())
    assert checked == 39  # images with at least one non-crowd person


def test_crowd_region_becomes_ignore_not_background(coco_mini, mini_val):
    crowd_ids = mini_val.getAnnIds(catIds=[1], iscrowd=True)
    assert crowd_ids, "coco-mini val has a crowd region"
    crowd = mini_val.loadAnns(crowd_ids)[0]
    image_id = crowd["image_id"]
    crowd_mask = mini_val.annToMask(crowd)

    mask, ignore = CocoPersons(coco_mini, "val").masks(image_id)
    np.testing.assert_array_equal(ignore, crowd_mask & (1 - mask))
    assert ignore.sum() > 1000

    mask_bg, ignore_bg = CocoPersons(coco_mini, "val", PersonFilter(crowd="background")).masks(
        image_id
    )
    np.testing.assert_array_equal(mask_bg, mask)
    assert not ignore_bg.any()

    skipped = CocoPersons(coco_mini, "val", PersonFilter(crowd="skip"))
    assert image_id not in skipped.image_ids and len(skipped) == len(mini_val.getImgIds()) - 1


def test_keypoint_and_area_filters_on_real_annotations(coco_mini, mini_val):
    kp = COCO(str(coco_mini / "annotations" / "person_keypoints_val2017.json"))
    anns = kp.loadAnns(kp.getAnnIds(catIds=[1], iscrowd=False))
    with_kps = [a for a in anns if a["num_keypoints"] > 0]
    assert 0 < len(with_kps) < len(anns)

    persons = CocoPersons(coco_mini, "val", PersonFilter(require_keypoints=True))
    stats = persons.stats()
    assert stats.valid_person_annotations == len(with_kps)
    assert stats.images_with_valid_persons == len({a["image_id"] for a in with_kps})
    # A person without keypoints is no longer foreground but ignored.
    dropped = next(a for a in anns if a["num_keypoints"] == 0 and a["area"] > 200)
    mask, ignore = persons.masks(dropped["image_id"])
    own = kp.annToMask(dropped).astype(bool)
    others = _union(
        kp, [a["id"] for a in with_kps if a["image_id"] == dropped["image_id"]], *own.shape
    )
    assert not mask[own & (others == 0)].any()
    assert ignore[own & (others == 0)].all()

    big = CocoPersons(coco_mini, "val", PersonFilter(min_area=96**2))
    assert big.stats().valid_person_annotations == sum(a["area"] >= 96**2 for a in anns)
    only_people = CocoPersons(coco_mini, "val", PersonFilter(min_area=96**2), include_empty=False)
    assert len(only_people) == len({a["image_id"] for a in anns if a["area"] >= 96**2})


def test_generated_edge_cases(generated_coco):
    g = generated_coco
    persons = CocoPersons(g.root, "val")
    assert persons.missing == [g.ids["missing"]]
    assert g.ids["missing"] not in persons.image_ids
    assert persons.files_unlisted == 1
    for image_id, (mask, ignore) in g.expected.items():
        got_mask, got_ignore = persons.masks(image_id)
        np.testing.assert_array_equal(got_mask, mask, err_msg=f"image {image_id}")
        np.testing.assert_array_equal(got_ignore, ignore, err_msg=f"image {image_id}")
    assert g.ids["empty"] in persons.image_ids  # pure background is kept by default
    with pytest.raises(UnreadableImageError, match="truncated"):
        persons.read_image(g.ids["corrupt"])
    image = persons.read_image(g.ids["rle"])
    assert image.shape == (100, 80, 3) and image.dtype == np.uint8

    no_empty = CocoPersons(g.root, "val", include_empty=False)
    assert g.ids["empty"] not in no_empty.image_ids


def test_filters_on_generated_persons(generated_coco):
    g = generated_coco
    image_id = g.ids["filters"]
    _, expected_ignore_none = g.expected[image_id]
    assert not expected_ignore_none.any()
    for flt in (PersonFilter(min_area=100), PersonFilter(require_keypoints=True)):
        mask, ignore = CocoPersons(g.root, "val", flt).masks(image_id)
        assert ignore[5:9, 80:84].all() and ignore.sum() == 16  # the tiny person
        assert mask[10:60, 10:50].all() and mask.sum() == 40 * 50  # the large one


def test_instances_fallback_uses_only_person_category(tmp_path):
    g = make_coco(tmp_path, split="train", keypoints=False)
    persons = CocoPersons(tmp_path, "train")
    assert persons.annotation_file.name == "instances_train2017.json"
    mask, _ = persons.masks(g.ids["polygons"])
    np.testing.assert_array_equal(mask, g.expected[g.ids["polygons"]][0])  # no dog pixels
    assert not persons.masks(g.ids["empty"])[0].any()  # the car is not a person
    with pytest.raises(CocoError, match="require_keypoints needs person_keypoints_train2017.json"):
        CocoPersons(tmp_path, "train", PersonFilter(require_keypoints=True))


def test_clear_errors_for_bad_folders(tmp_path):
    with pytest.raises(CocoError, match="instances_val2017.json"):
        CocoPersons(tmp_path, "val")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text('{"images": [')
    with pytest.raises(CocoError, match="not valid JSON"):
        CocoPersons(tmp_path, "val")
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps({"images": []}))
    with pytest.raises(CocoError, match="val2017 does not exist"):
        CocoPersons(tmp_path, "val")
    with pytest.raises(ValueError, match="split must be one of train, val"):
        CocoPersons(tmp_path, "test")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"crowd": "drop"}, "crowd must be one of"), ({"min_area": -1}, "min_area must be >= 0")],
)
def test_person_filter_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PersonFilter(**kwargs)


def test_annotation_mask_handles_degenerate_polygons():
    ann = {"id": 1, "segmentation": [[1, 1, 5, 1]], "category_id": 1}
    assert not annotation_mask(ann, 10, 10).any()
    rle_wrong_size = {"id": 2, "segmentation": {"size": [5, 5], "counts": [25]}}
    with pytest.raises(CocoError, match="differs from the image size"):
        annotation_mask(rle_wrong_size, 10, 10)


def test_other_objects_are_the_things_that_are_not_people(coco_mini):
    # The keypoints file (preferred for people) lists people only: the objects come from
    # the split's instances file, never from the validation split when asked for train.
    persons = CocoPersons(coco_mini, "train")
    assert persons.annotation_file.name.startswith("person_keypoints")
    objects = persons.other_objects(min_side=24)
    assert len(objects) > 100
    assert all(ann["category_id"] != 1 and not ann.get("iscrowd") for ann in objects)
    assert {ann["image_id"] for ann in objects} <= set(persons.image_ids)
    assert [ann["id"] for ann in objects] == sorted(ann["id"] for ann in objects)
    assert min(min(ann["bbox"][2:]) for ann in objects) >= 24
    assert len(persons.other_objects(min_side=100)) < len(objects)
    picture, outline = persons.cut_out(objects[0])
    assert picture.shape[:2] == outline.shape and picture.dtype == np.uint8
    assert outline.dtype == np.float32 and 0.05 < outline.mean() <= 1
    _, _, w, h = objects[0]["bbox"]
    assert abs(picture.shape[0] - h) < 2 and abs(picture.shape[1] - w) < 2  # whole pixels


def test_a_split_without_an_instances_file_has_no_other_objects(tmp_path):
    make_coco(tmp_path / "kp", split="val", keypoints=True)
    (tmp_path / "kp" / "annotations" / "instances_val2017.json").unlink()
    assert CocoPersons(tmp_path / "kp", "val").other_objects() == []
