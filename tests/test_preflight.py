"""``unetbg.preflight.verify``: the dataset checks plus a model forward pass, on generated data."""

from __future__ import annotations

from unetbg.preflight import verify


def test_verify_generated_reports_missing_and_corrupt(generated_coco):
    r = verify(generated_coco.root, "val", sample=10, batch_size=2, image_size=64, device="cpu")
    status = {c.name: c for c in r.checks}
    assert not r.ok
    assert status["images on disk"].status == "FAIL"
    assert "000000000005.jpg" in status["images on disk"].detail
    assert status["decode sample"].status == "FAIL"
    assert "000000000006.jpg" in status["decode sample"].detail
    assert status["data loader"].status == "PASS"  # the dataset itself survives bad files
    assert status["model forward"].status == "PASS"


def test_verify_without_annotations_skips_dependent_checks(tmp_path):
    r = verify(tmp_path, "val", device="cpu")
    status = {c.name: c.status for c in r.checks}
    assert status["structure"] == "FAIL" and status["annotations"] == "FAIL"
    assert status["data loader"] == "SKIP" and status["model forward"] == "SKIP"
