"""CocoPersonDataset: samples, unreadable images and batching."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch.utils.data import DataLoader

from cocogen import make_coco
from unetbg.data import CocoPersonDataset, CocoPersons, EvalPreset, TrainPreset


def test_samples_have_the_contract_keys_and_ranges(generated_coco):
    g = generated_coco
    ds = CocoPersonDataset(CocoPersons(g.root, "val"), EvalPreset(64))
    sample = ds[ds.persons.image_ids.index(g.ids["crowd"])]
    assert sample["image_id"] == g.ids["crowd"] and isinstance(sample["image_id"], int)
    assert sample["image"].shape == (3, 64, 64) and sample["image"].dtype == torch.float32
    assert (
        sample["raw"].shape == (3, 64, 64) and 0 <= sample["raw"].min() <= sample["raw"].max() <= 1
    )
    assert sample["mask"].shape == sample["ignore"].shape == (1, 64, 64)
    # 96×64 letterboxed to 64: rows 0..10 and 53..63 are padding, hence ignored.
    assert sample["ignore"][0, :10].all() and sample["ignore"][0, 54:].all()
    assert sample["mask"].sum() > 100 and (sample["mask"] * sample["ignore"]).sum() == 0
    # The person is red in the image: foreground pixels are red, crowd pixels too (painted red).
    red = sample["raw"][0] - sample["raw"][1]
    assert red[sample["mask"][0] > 0].mean() > 0.5


def test_unreadable_image_is_recorded_and_replaced(generated_coco):
    g = generated_coco
    ds = CocoPersonDataset(CocoPersons(g.root, "val"), EvalPreset(64))
    corrupt_index = ds.persons.image_ids.index(g.ids["corrupt"])
    sample = ds[corrupt_index]
    assert sample["image_id"] == ds.persons.image_ids[corrupt_index + 1]
    assert set(ds.unreadable) == {g.ids["corrupt"]}
    assert "truncated" in ds.unreadable[g.ids["corrupt"]]
    ids = [int(i) for b in DataLoader(ds, batch_size=4) for i in b["image_id"]]
    assert len(ids) == len(ds) and g.ids["corrupt"] not in ids


def test_all_unreadable_raises_clearly(tmp_path):
    g = make_coco(tmp_path)
    for image_id in g.readable:
        path = tmp_path / "val2017" / f"{image_id:012d}.jpg"
        path.write_bytes(path.read_bytes()[:100])
    ds = CocoPersonDataset(CocoPersons(tmp_path, "val"), EvalPreset(64))
    with pytest.raises(RuntimeError, match="none of the 6 images"):
        ds[0]
    shutil.rmtree(tmp_path / "val2017")
    (tmp_path / "val2017").mkdir()
    with pytest.raises(ValueError, match="7 listed images are missing"):
        CocoPersonDataset(CocoPersons(tmp_path, "val"), EvalPreset(64))


def test_real_batch_with_training_preset(coco_mini):
    persons = CocoPersons(coco_mini, "val", include_empty=False)
    ds = CocoPersonDataset(persons, TrainPreset(96, seed=0))
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch["image"].shape == (4, 3, 96, 96)
    assert batch["image_id"].tolist() == persons.image_ids[:4]
    assert batch["mask"].sum() > 0  # include_empty=False: every image has a person
    assert torch.isfinite(batch["image"]).all()
