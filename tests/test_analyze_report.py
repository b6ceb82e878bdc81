"""``unetbg.data.checks.analyze``: the report reuses ``CocoStats`` and keeps its JSON keys."""

from __future__ import annotations

from unetbg.data import CocoPersons
from unetbg.data.checks import analyze

#: The JSON keys ``unetbg coco analyze --json`` has always printed, in order.
KEYS = [
    "root",
    "split",
    "annotation_file",
    "filter",
    "images_total",
    "images_on_disk",
    "images_missing",
    "files_unlisted",
    "person_annotations",
    "crowd_annotations",
    "valid_person_annotations",
    "ignored_person_annotations",
    "images_with_persons",
    "images_with_valid_persons",
    "images_without_persons",
    "avg_persons_per_image",
    "avg_persons_per_person_image",
    "person_area",
    "image_sizes",
]


def test_analyze_report_embeds_the_split_stats(coco_root):
    report = analyze(coco_root, "val")
    stats = CocoPersons(coco_root, "val").stats()
    assert report.stats == stats
    data = report.to_dict()
    assert list(data) == KEYS
    assert data["images_total"] == report.images_total == stats.images_listed
    for key in KEYS[5:15]:
        assert data[key] == getattr(report, key) == getattr(stats, key), key
    assert data["annotation_file"] == report.annotation_file == stats.annotation_file
