"""Several sources in one run: weights, determinism, and val never training."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from maskgen import make_mask_folder
from unetbg.data.copypaste import CopyPaste, PasteScale, paste_person
from unetbg.data.folders import MaskFolder
from unetbg.data.mixed import MixedSamples, SourceSamples
from unetbg.data.presets import EvalPreset
from unetbg.data.sources import DataSource, unique_names


def _identity(image, mask, ignore):
    return {"image": image, "mask": mask, "ignore": ignore}


@pytest.fixture
def two_folders(tmp_path):
    return (
        make_mask_folder(tmp_path / "a" / "people", count=30, seed=1),
        make_mask_folder(tmp_path / "b" / "people", count=10, seed=2),
    )


def test_source_specs_parse_weights_and_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert DataSource.parse("masks:rel/dir:0.25") == DataSource(
        "masks", str(tmp_path / "rel" / "dir"), 0.25
    )
    assert DataSource.parse("coco:/x/y").weight == 1.0
    assert DataSource.parse("masks:/a:b/c").path == "/a:b/c"  # ':' inside a path
    for bad, message in (
        ("images:/x", "unknown data kind 'images'; valid kinds: coco, masks"),
        ("/x/y", "is not KIND:PATH"),
        ("masks:/x:-1", "weight must be >= 0"),
    ):
        with pytest.raises(ValueError, match=message):
            DataSource.parse(bad)
    # Two folders of one name are told apart.
    sources = [DataSource("masks", "/a/people"), DataSource("masks", "/b/people")]
    assert unique_names(sources) == ["people", "people-2"]


def _keys(mixture: MixedSamples) -> list[tuple[int, str]]:
    return [(r, mixture.readers[r].key(i)) for r, i in mixture.plan()]


def test_mixture_follows_weights_and_replays_exactly(two_folders):
    a, b = (MaskFolder(f, "train", 20) for f in two_folders)
    mix = MixedSamples([a, b], [3, 1], _identity, samples_per_epoch=400, seed=7)
    mix.set_epoch(1)
    first = _keys(mix)
    counts = Counter(r for r, _ in first)
    assert 0.68 < counts[0] / 400 < 0.82  # 3:1 within sampling noise
    # Each source is cycled: every image is used before any image repeats.
    b_order = [k for r, k in first if r == 1]
    assert len(set(b_order[: len(b)])) == len(b)
    again = MixedSamples([a, b], [3, 1], _identity, samples_per_epoch=400, seed=7)
    again.set_epoch(1)
    assert _keys(again) == first
    mix.set_epoch(2)
    assert _keys(mix) != first
    sample, replay = mix[5], again
    replay.set_epoch(2)
    assert np.array_equal(sample["image"], replay[5]["image"])


def test_a_zero_weight_source_is_never_drawn_and_an_empty_one_refused(two_folders):
    a, b = (MaskFolder(f, "train", 20) for f in two_folders)
    mix = MixedSamples([a, b], [1, 0], _identity, samples_per_epoch=50, seed=0)
    mix.set_epoch(1)
    assert {r for r, _ in mix.plan()} == {0}
    empty = MaskFolder(two_folders[1], "val", 0)
    with pytest.raises(ValueError, match="has no images"):
        MixedSamples([a, empty], [1, 1], _identity, samples_per_epoch=5, seed=0)


def test_validation_images_never_reach_training(two_folders, tmp_path):
    from unetbg.training.config import resolve_config
    from unetbg.training.loaders import build_data

    cfg = resolve_config(
        "smoke",
        data=tuple(f"masks:{f}" for f in two_folders),
        val_percent=30,
        samples_per_epoch=64,
        copy_paste=0.0,
        val_limit=None,
    ).for_device("cpu")
    data = build_data(cfg)
    assert data.val_sources == ["people", "people-2"]
    val_keys = {(r.name, r.key(i)) for r in data.val_loader.dataset.readers for i in range(len(r))}
    assert val_keys
    mixture = data.train_samples.dataset
    for epoch in range(1, 6):
        data.set_epoch(epoch)
        used = {(mixture.readers[r].name, mixture.readers[r].key(i)) for r, i in mixture.plan()}
        assert not used & val_keys
    # Every validation sample is tagged with its source, in order.
    tags = [data.val_loader.dataset[i]["source"] for i in range(len(data.val_loader.dataset))]
    assert tags == sorted(tags) and set(tags) == {0, 1}


def test_source_samples_tag_and_skip_unreadable(two_folders):
    a, b = MaskFolder(two_folders[0]), MaskFolder(two_folders[1])
    (two_folders[1] / "images" / "img001.jpg").write_bytes(b"broken")
    samples = SourceSamples([a, b], EvalPreset(64))
    assert len(samples) == 40
    assert samples[29]["source"] == 0 and samples[30]["source"] == 1
    assert samples[31]["source"] == 1  # img001 of b, replaced by the next readable one
    assert list(samples.unreadable) == [("people", "img001")]


def _donor(h=40, w=20):
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = (200, 50, 50)
    mask = np.zeros((h, w), np.uint8)
    mask[5:35, 4:16] = 1
    return image, mask


def test_paste_labels_exactly_the_pasted_pixels_and_keeps_ignore_elsewhere():
    rng = np.random.default_rng(0)
    pastes = 0
    for _ in range(50):
        image = np.full((120, 160, 3), 17, np.uint8)
        mask = np.zeros((120, 160), np.uint8)
        mask[80:, :20] = 1
        ignore = np.zeros((120, 160), np.uint8)
        ignore[:30, 100:] = 1
        before = (image.copy(), mask.copy(), ignore.copy())
        pasted = paste_person(image, mask, ignore, *_donor(), rng, PasteScale(0.1, 0.9))
        if not pasted.any():
            continue
        pastes += 1
        assert (mask[pasted] == 1).all()  # every pasted pixel is person
        assert (ignore[pasted] == 0).all()
        assert (image[pasted] == (200, 50, 50)).all()  # and shows the donor's person
        rest = ~pasted
        assert np.array_equal(image[rest], before[0][rest])
        assert np.array_equal(mask[rest], before[1][rest])
        assert np.array_equal(ignore[rest], before[2][rest])  # ignore areas stay ignore
    assert pastes > 40


def test_paste_never_carries_donor_background():
    rng = np.random.default_rng(3)
    donor_image, donor_mask = _donor()
    donor_image[donor_mask == 0] = (0, 255, 0)  # a labelled-as-background bystander
    for _ in range(30):
        image = np.zeros((100, 100, 3), np.uint8)
        paste_person(
            image,
            np.zeros((100, 100), np.uint8),
            np.zeros((100, 100), np.uint8),
            donor_image,
            donor_mask,
            rng,
        )
        assert not (image == (0, 255, 0)).all(-1).any()


def test_copy_paste_leaves_inputs_alone_and_is_reproducible(two_folders):
    donors = [MaskFolder(two_folders[0], "train", 20)]
    paste = CopyPaste(donors, p=1.0, max_objects=3)
    image = np.full((90, 120, 3), 9, np.uint8)
    mask = np.zeros((90, 120), np.uint8)
    ignore = np.ones((90, 120), np.uint8)
    out = paste(image, mask, ignore, np.random.default_rng(5))
    assert image.max() == 9 and mask.sum() == 0 and ignore.min() == 1  # inputs untouched
    assert out[1].sum() > 0
    assert ((out[1] == 1) == (out[2] == 0)).all()  # pasted: person and no longer ignored
    again = paste(image, mask, ignore, np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(out, again, strict=True))
    never = CopyPaste(donors, p=0.0)(image, mask, ignore, np.random.default_rng(5))
    assert never[0] is image


def test_photos_without_people_can_be_kept_as_pure_negatives(two_folders):
    donors = [MaskFolder(two_folders[0], "train", 20)]
    keep = CopyPaste(donors, p=1.0, max_objects=3, onto_empty=False)
    image = np.full((90, 120, 3), 9, np.uint8)
    empty, ignore = np.zeros((90, 120), np.uint8), np.zeros((90, 120), np.uint8)
    for seed in range(5):
        out = keep(image, empty, ignore, np.random.default_rng(seed))
        assert out[0] is image and out[1] is empty  # nobody there: left whole
    # A photo with a person in it still gets company.
    someone = empty.copy()
    someone[40:60, 10:20] = 1
    out = keep(image, someone, ignore, np.random.default_rng(5))
    assert out[1].sum() > someone.sum()
    # The default pastes into empty photos too (Ghiasi et al.'s setting).
    assert CopyPaste(donors, p=1.0)(image, empty, ignore, np.random.default_rng(5))[1].sum() > 0


def test_has_person_reads_the_mask_and_counts_crowds_and_broken_masks_as_people(two_folders):
    folder = MaskFolder(two_folders[0])
    for index, stem in enumerate(folder.stems):
        _, mask, _ = folder.load(index)
        expected = bool(mask.any()) or stem in folder.ignores
        assert folder.has_person(index) == expected, stem
    # maskgen: every third photo has nobody, every fourth an ignore map.
    assert not folder.has_person(folder.stems.index("img003"))
    assert folder.has_person(folder.stems.index("img000"))  # empty mask, but an ignore map
    (two_folders[0] / "masks" / "img003.png").write_bytes(b"broken")
    assert folder.has_person(folder.stems.index("img003"))


def test_coco_has_person_follows_the_annotations(coco_root):
    reader = DataSource("coco", str(coco_root)).reader("val")  # the fallback has val only
    flags = [reader.has_person(i) for i in range(len(reader))]
    assert True in flags and False in flags
    for index, flag in enumerate(flags):
        mask, ignore = reader.persons.masks(reader.persons.image_ids[index])
        assert flag == bool(mask.any() or ignore.any())


def test_empty_share_draws_that_share_from_photos_without_people(two_folders):
    a, b = (MaskFolder(f, "train", 20) for f in two_folders)
    empties = {(r, i) for r, m in enumerate((a, b)) for i in range(len(m)) if not m.has_person(i)}
    assert empties
    plain = MixedSamples([a, b], [3, 1], _identity, samples_per_epoch=400, seed=7)
    mix = MixedSamples([a, b], [3, 1], _identity, 400, seed=7, empty_share=0.5)
    assert set(mix.empties) == empties
    for epoch in (1, 2):
        plain.set_epoch(epoch)
        mix.set_epoch(epoch)
        swapped = [
            n for n, (p, m) in enumerate(zip(plain.plan(), mix.plan(), strict=True)) if p != m
        ]
        assert all(mix.plan()[n] in empties for n in swapped)
        drawn_empty = sum(position in empties for position in mix.plan())
        assert 0.5 < drawn_empty / 400 < 0.75  # half of them, plus what the weights drew
        assert sum(position in empties for position in plain.plan()) / 400 < 0.35
        again = MixedSamples([a, b], [3, 1], _identity, 400, seed=7, empty_share=0.5)
        again.set_epoch(epoch)
        assert again.plan() == mix.plan()  # replays exactly, as the resume needs
    # Only sources that train lend photos without people.
    only_a = MixedSamples([a, b], [1, 0], _identity, 50, seed=0, empty_share=0.5)
    assert {r for r, _ in only_a.empties} == {0}


def test_empty_share_without_any_photo_without_people_is_refused(tmp_path):
    folder = make_mask_folder(tmp_path / "crowded", count=6)
    for stem in ("img000", "img003"):  # maskgen's empty ones: give them someone
        mask = np.zeros((60, 80), np.uint8)
        mask[10:20, 10:20] = 255
        Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")
        (folder / "ignore" / f"{stem}.png").unlink(missing_ok=True)
    reader = MaskFolder(folder)
    with pytest.raises(ValueError, match=r"empty_share 0.3 needs photos without people.*crowded"):
        MixedSamples([reader], [1], _identity, 10, seed=0, empty_share=0.3)
