"""quick / analyze / batch against direct pycocotools figures and generated data."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools.coco import COCO

from unetbg.data import PersonFilter
from unetbg.data.checks import ANNOTATIONS_URL, analyze, batch, quick


def test_analyze_matches_pycocotools_on_real_val(coco_mini):
    ref = COCO(str(coco_mini / "annotations" / "instances_val2017.json"))
    person_ids = ref.getAnnIds(catIds=[1])
    crowd_ids = ref.getAnnIds(catIds=[1], iscrowd=True)
    valid = ref.loadAnns(ref.getAnnIds(catIds=[1], iscrowd=False))
    areas = np.array([a["area"] for a in valid])

    r = analyze(coco_mini, "val")
    assert r.images_total == len(ref.getImgIds()) == 79
    assert r.person_annotations == len(person_ids) == 118
    assert r.crowd_annotations == len(crowd_ids) == 1
    assert r.valid_person_annotations == len(valid)
    assert r.images_with_valid_persons == len({a["image_id"] for a in valid})
    assert r.images_with_persons == len(ref.getImgIds(catIds=[1]))
    assert r.avg_persons_per_person_image == pytest.approx(len(valid) / r.images_with_valid_persons)
    assert r.avg_persons_per_image == pytest.approx(len(valid) / 79)
    assert r.person_area["small"] == int((areas < 32**2).sum())
    assert r.person_area["medium"] == int(((areas >= 32**2) & (areas < 96**2)).sum())
    assert r.person_area["large"] == int((areas >= 96**2).sum())
    assert r.person_area["pixels"]["p50"] == pytest.approx(np.median(areas), rel=1e-5)
    assert r.images_missing == 0 and r.files_unlisted == 80
    widths = [i["width"] for i in ref.loadImgs(ref.getImgIds())]
    assert r.image_sizes["width"]["max"] == max(widths)
    assert r.image_sizes["landscape"] + r.image_sizes["portrait"] + r.image_sizes["square"] == 79

    strict = analyze(coco_mini, "val", PersonFilter(min_area=96**2))
    assert strict.valid_person_annotations == r.person_area["large"]


def test_analyze_generated_reports_missing_and_unlisted(generated_coco):
    r = analyze(generated_coco.root, "val")
    assert (r.images_total, r.images_on_disk, r.images_missing, r.files_unlisted) == (7, 6, 1, 1)
    assert (r.person_annotations, r.crowd_annotations, r.valid_person_annotations) == (10, 1, 9)
    assert r.images_without_persons == 1


def test_quick_names_what_is_missing_and_how_to_get_it(tmp_path):
    r = quick(tmp_path / "COCO", "train")
    assert not r.ok
    assert [c.name for c in r.checks if c.status == "FAIL"] == [
        "root folder",
        "annotation file",
        "image folder",
    ]
    text = "\n".join(r.commands)
    assert f"wget -c {ANNOTATIONS_URL}" in text
    assert "wget -c http://images.cocodataset.org/zips/train2017.zip" in text
    assert f"unzip -q -o {tmp_path}/COCO/train2017.zip -d {tmp_path}/COCO" in text

    (tmp_path / "COCO" / "annotations").mkdir(parents=True)
    (tmp_path / "COCO" / "annotations" / "instances_train2017.json").write_text("{}")
    (tmp_path / "COCO" / "train2017").mkdir()
    r = quick(tmp_path / "COCO", "train")
    assert r.missing == [f"images in {tmp_path}/COCO/train2017"]
    assert ANNOTATIONS_URL not in "\n".join(r.commands)


def test_quick_passes_on_real_layout(coco_root):
    r = quick(coco_root, "val")
    assert r.ok and r.commands == []


def test_batch_on_real_subset(coco_mini):
    r = batch(coco_mini, "val", batch_size=3, image_size=64, seed=1)
    shapes = {t.name: t.shape for t in r.tensors}
    assert shapes == {
        "image": [3, 3, 64, 64],
        "raw": [3, 3, 64, 64],
        "mask": [3, 1, 64, 64],
        "ignore": [3, 1, 64, 64],
    }
    raw = next(t for t in r.tensors if t.name == "raw")
    assert 0 <= raw.min <= raw.max <= 1
    assert len(r.image_ids) == 3 and r.seconds_per_image > 0
    assert r.image_ids == batch(coco_mini, "val", batch_size=3, image_size=64, seed=1).image_ids
