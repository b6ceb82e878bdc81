"""Mask folders: loading, the hash split, and the errors of broken folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from maskgen import make_mask_folder
from prerequisites import unavailable
from unetbg.cli import main
from unetbg.data.coco import UnreadableImageError
from unetbg.data.folder_checks import check_mask_folder
from unetbg.data.folders import MaskFolder, MaskFolderError, read_mask, split_of

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_mask_folder(tmp_path / "people", count=12)


def test_pairs_load_with_the_label_and_ignore_rules(folder):
    data = MaskFolder(folder)
    assert len(data) == 12 and data.stems == sorted(data.stems)
    image, mask, ignore = data.load(1)
    assert image.shape == (60, 80, 3) and image.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}
    stored = np.asarray(Image.open(folder / "masks" / "img001.png"))
    assert np.array_equal(mask, (stored >= 128).astype(np.uint8))
    _, mask0, ignore0 = data.load(0)  # a negative with an ignore corner
    assert mask0.sum() == 0 and ignore0[:15, :20].all() and ignore0.sum() == 15 * 20
    assert ignore.sum() == 0  # img001 has no ignore file


def test_an_ignore_pixel_that_is_person_stays_person(folder):
    stem = "img004"  # has a person and an ignore file
    whole = np.full((60, 80), 255, np.uint8)
    Image.fromarray(whole).save(folder / "ignore" / f"{stem}.png")
    data = MaskFolder(folder)
    image = data.read_image(stem)
    mask, ignore = data.masks(stem, image.shape[:2])
    assert mask.sum() > 0
    assert not (ignore & mask).any() and (ignore | mask).all()


def test_soft_rgb_and_16_bit_masks_are_cut_at_one_half(tmp_path):
    soft = np.array([[0, 127, 128, 255]], np.uint8)
    Image.fromarray(soft).save(tmp_path / "soft.png")
    Image.fromarray(np.stack([soft] * 3, -1)).save(tmp_path / "rgb.png")
    Image.fromarray(soft.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    for name in ("soft.png", "rgb.png", "deep.png"):
        assert read_mask(tmp_path / name).tolist() == [[0, 0, 1, 1]], name


def test_split_is_by_name_hash_disjoint_and_stable(folder):
    train, val = MaskFolder(folder, "train", 30), MaskFolder(folder, "val", 30)
    assert not set(train.stems) & set(val.stems)
    assert sorted(train.stems + val.stems) == MaskFolder(folder).stems
    assert val.stems == [s for s in MaskFolder(folder).stems if split_of(s, 30) == "val"]
    # The split of a name does not depend on what else is in the folder.
    (folder / "images" / "img000.jpg").unlink()
    assert MaskFolder(folder, "val", 30).stems == [s for s in val.stems if s != "img000"]
    shares = [split_of(f"photo{i}", 10) == "val" for i in range(5000)]
    assert 0.08 < np.mean(shares) < 0.12


def test_broken_folders_raise_or_report(folder):
    with pytest.raises(MaskFolderError, match="images/ is missing"):
        MaskFolder(folder / "images")
    shutil.rmtree(folder / "ignore")
    shutil.move(folder / "masks", folder / "labels")
    with pytest.raises(MaskFolderError, match="masks/ is missing"):
        MaskFolder(folder)
    shutil.move(folder / "labels", folder / "masks")
    (folder / "masks" / "img002.png").unlink()
    shutil.copy(folder / "masks" / "img001.png", folder / "masks" / "stray.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "masks" / "img005.png")
    (folder / "images" / "img007.jpg").write_bytes(b"not a jpeg at all")
    data = MaskFolder(folder)
    assert data.missing_masks == ["img002"] and data.extra_masks == ["stray"]
    assert "img002" not in data.stems
    with pytest.raises(UnreadableImageError, match="mask is 10x10 but the image is 80x60"):
        data.load(data.stems.index("img005"))
    with pytest.raises(UnreadableImageError, match="cannot decode"):
        data.load(data.stems.index("img007"))


def test_check_reports_each_problem(folder):
    assert check_mask_folder(folder).ok
    (folder / "masks" / "img002.png").unlink()
    shutil.copy(folder / "masks" / "img001.png", folder / "masks" / "stray.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "masks" / "img005.png")
    (folder / "images" / "img007.jpg").write_bytes(b"")
    Image.fromarray(np.full((60, 80), 255, np.uint8)).save(folder / "masks" / "img008.png")
    shutil.copy(folder / "images" / "img001.jpg", folder / "images" / "img001.png")
    report = check_mask_folder(folder)
    status = {c.name: c.status for c in report.checks}
    assert status == {"structure": "PASS", "pairs": "FAIL", "decode": "FAIL", "masks": "FAIL"}
    assert report.missing_masks == ["img002"] and report.extra_masks == ["stray"]
    assert report.duplicates == ["images/img001.png"]
    assert list(report.size_mismatches) == ["img005"]
    assert list(report.unreadable) == ["img007"]
    assert report.full_masks == ["img008"]
    assert report.empty_masks == ["img000", "img003", "img006", "img009"]


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_masks_check_command_text_json_and_exit_status(folder, tmp_path):
    ok = _cli("masks", "check", str(folder))
    assert ok.exit_code == 0, ok.output
    assert "All checks passed." in ok.output and "12 pairs" in ok.output
    (folder / "masks" / "img002.png").unlink()
    bad = _cli("masks", "check", str(folder), "--json")
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False and report["missing_masks"] == ["img002"]
    missing = _cli("masks", "check", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1 and "images/ is missing" in missing.output


@pytest.mark.parametrize("name", ["coco-person", "ccp-person"])
def test_the_real_person_folders_pass_their_checks(name):
    root = SHARED / name
    if not root.is_dir():
        unavailable(f"real person data not found at {root}")
    report = check_mask_folder(root)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert report.pairs == {"coco-person": 1541, "ccp-person": 903}[name]
    if name == "coco-person":
        assert len(report.empty_masks) == 187
