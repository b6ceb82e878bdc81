"""Background swap: the label follows the person exactly, the seam is soft, the framing holds,
and the robustness set is built from validation photos only."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskgen import make_mask_folder
from unetbg.data.composite import (
    FRAMINGS,
    KINDS,
    BackdropSwap,
    Framing,
    composite,
    make_backdrop,
    person_box,
    random_colour,
    solid,
)
from unetbg.data.folders import VALIDATION_ONLY, MaskFolder, split_of
from unetbg.data.mixed import MixedSamples

ROOT = Path(__file__).resolve().parents[2]


def _person(h: int = 200, w: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """A noisy photo with an orange 'person' (a tall block with a head) in the middle."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 90, (h, w, 3)).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[40:180, 35:85] = 1
    mask[15:40, 48:72] = 1  # the head
    image[mask == 1] = (230, 140, 60)
    return image, mask


def test_composite_labels_the_moved_person_and_nothing_of_its_old_background():
    image, mask = _person()
    image_before, mask_before = image.copy(), mask.copy()
    wall = solid(240, 180, (10, 40, 200))
    out, label = composite(image, mask, wall, Framing(1.0, 0.8, 0.1), feather=0)
    assert np.array_equal(image, image_before) and np.array_equal(mask, mask_before)
    assert out.shape == (240, 180, 3) and label.dtype == np.uint8
    # The person's box is 165 px high: scaled to 80 % of 240 px, its top at 10 %.
    y0, y1, x0, x1 = person_box(label)
    assert (y0, y1) == (24, 216) and abs((x0 + x1) / 2 - 90) <= 1
    # Hard paste: inside the label the person's colour, outside exactly the wall.
    assert np.abs(out[label == 1].astype(int) - (230, 140, 60)).max() <= 2
    assert np.array_equal(out[label == 0], wall[label == 0])


def test_feathered_edge_blends_only_a_rim_and_keeps_the_person_whole():
    image, mask = _person()
    wall = solid(240, 180, (0, 0, 0))
    hard, label = composite(image, mask, wall, Framing(1.0, 0.8, 0.1), feather=0)
    soft, same_label = composite(image, mask, wall, Framing(1.0, 0.8, 0.1), feather=2.0)
    assert np.array_equal(label, same_label)  # the label never blurs
    changed = np.any(soft != hard, axis=2)
    assert changed.any()
    # Every changed pixel lies within 3 sigma of the outline, on either side.
    import cv2

    ring = cv2.dilate(label, np.ones((13, 13), np.uint8)) - cv2.erode(
        label, np.ones((3, 3), np.uint8)
    )
    assert not (changed & (ring == 0)).any()
    # Outside the label, the blend only brightens black (person light bleeds out).
    assert (soft[label == 0].astype(int) >= hard[label == 0]).all()


def test_head_and_shoulders_is_cut_by_the_frame():
    image, mask = _person()
    out, label = composite(image, mask, solid(240, 180, (255, 255, 255)), FRAMINGS["head"])
    y0, y1, _, _ = person_box(label)
    assert y0 == round(0.05 * 240) and y1 == 240  # the body runs out of the bottom edge
    whole = composite(image, mask, solid(240, 180, (255, 255, 255)), FRAMINGS["whole"])[1]
    assert label.sum() > 2 * whole.sum()


def test_harmonise_pulls_the_person_towards_the_backdrop():
    image, mask = _person()
    wall = solid(240, 180, (0, 0, 255))
    plain, label = composite(image, mask, wall, Framing(), feather=0)
    pulled, _ = composite(image, mask, wall, Framing(), feather=0, harmonise=0.25)
    inside = label == 1
    assert pulled[inside][:, 2].mean() > plain[inside][:, 2].mean() + 30
    assert pulled[inside][:, 0].mean() < plain[inside][:, 0].mean() - 30


def test_composite_refuses_an_empty_mask_and_framing_is_validated():
    image, mask = _person()
    with pytest.raises(ValueError, match="mask is empty"):
        composite(image, np.zeros_like(mask), solid(10, 10, (0, 0, 0)), Framing())
    for bad in (dict(part=0), dict(part=1.5), dict(height=0)):
        with pytest.raises(ValueError):
            Framing(**bad)


def test_backdrops_cover_every_kind_and_the_colour_extremes():
    rng = np.random.default_rng(3)
    for kind in KINDS:
        canvas = make_backdrop(kind, 50, 70, rng)
        assert canvas.shape == (50, 70, 3) and canvas.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown backdrop kind 'plaid'"):
        make_backdrop("plaid", 5, 5, rng)
    colours = np.array([random_colour(rng) for _ in range(400)])
    assert (colours.max(1) == 0).any() and (colours.min(1) == 255).any()  # black, white
    saturated_red = (colours[:, 0] > 200) & (colours[:, 1] < 60) & (colours[:, 2] < 60)
    assert saturated_red.any()


def test_swap_leaves_crowds_and_empty_photos_alone_and_replays():
    image, mask = _person()
    photo = np.full((100, 100, 3), 77, np.uint8)
    swap = BackdropSwap(1.0, lambda i: photo, 1)
    crowd = np.zeros_like(mask)
    crowd[:5, :5] = 1
    assert swap(image, mask, crowd, np.random.default_rng(0))[0] is image
    assert swap(image, np.zeros_like(mask), crowd * 0, np.random.default_rng(0))[0] is image
    assert BackdropSwap(0.0)(image, mask, crowd * 0, np.random.default_rng(0))[0] is image
    first = swap(image, mask, crowd * 0, np.random.default_rng(5))
    again = swap(image, mask, crowd * 0, np.random.default_rng(5))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    new_image, new_mask, new_ignore = first
    assert new_mask.any() and not new_ignore.any() and new_image.shape[:2] == new_mask.shape
    # Over many draws the photo backdrop is used, and the person keeps its colour.
    uses = 0
    for seed in range(40):
        out, label, _ = swap(image, mask, crowd * 0, np.random.default_rng(seed))
        uses += int((out[label == 0] == 77).all(axis=1).mean() > 0.9)
        core = label.astype(bool)
        assert np.abs(np.median(out[core], axis=0) - (230, 140, 60)).max() < 60
    assert 3 <= uses <= 25  # about 30 % of the draws


def test_a_swapped_partial_sample_is_complete(tmp_path):
    folder = MaskFolder(make_mask_folder(tmp_path / "ccp", count=12, seed=4), "all")

    def identity(image, mask, ignore):
        return {"image": image, "mask": mask, "ignore": ignore}

    mix = MixedSamples([folder], [1], identity, 60, seed=1, partial=[True], swap=BackdropSwap(0.5))
    flags = []
    for index in range(60):
        sample = mix[index]
        r, item = mix.plan()[index]
        original = folder.load(item)[0]
        swapped = sample["image"].shape != original.shape or not np.array_equal(
            sample["image"], original
        )
        assert sample["partial"] is (not swapped)
        flags.append(swapped)
    assert 10 < sum(flags) < 40
    assert np.array_equal(mix[7]["image"], mix[7]["image"])  # (seed, epoch, index) decide


def test_a_validation_only_folder_never_trains(tmp_path):
    root = make_mask_folder(tmp_path / "sv", count=10, seed=5)
    assert 0 < len(MaskFolder(root, "train")) < 10
    (root / VALIDATION_ONLY).write_text("")
    assert len(MaskFolder(root, "train")) == 0
    assert len(MaskFolder(root, "val")) == len(MaskFolder(root, "all")) == 10


def _build(*args: str) -> subprocess.CompletedProcess:
    script = ROOT / "scripts" / "build_studio_val.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )


def _shared(root: Path) -> Path:
    """Three mask folders named like the real sets, photos big enough to frame, every
    name's split known; coco-person also holds photos without people."""
    for n, name in enumerate(("ccp-person", "viton-person", "coco-person")):
        make_mask_folder(root / name, count=60, size=(180, 240), seed=10 + n)
    # The generated 'people' are 80 px high ellipses: make them tall enough to frame.
    for folder in root.iterdir():
        for mask_path in (folder / "masks").iterdir():
            mask = np.asarray(Image.open(mask_path))
            if mask.any():
                tall = np.zeros_like(mask)
                tall[30:220, 60:120] = 255
                Image.fromarray(tall).save(mask_path)
        for ignore_path in (folder / "ignore").iterdir():
            ignore_path.unlink()
    return root


def test_studio_val_is_built_from_val_photos_only_and_deterministically(tmp_path):
    shared = _shared(tmp_path / "data")
    out = tmp_path / "studio-val"
    done = _build(str(out), "--shared", str(shared), "--per-source", "2")
    assert done.returncode == 0, done.stderr
    assert "180 photos of 6 people" in done.stdout
    rows = (out / "manifest.tsv").read_text().splitlines()[1:]
    assert len(rows) == 3 * 2 * 3 * 10  # sources × people × framings × backdrops
    for row in rows:
        name, source, stem, framing, backdrop = row.split("\t")
        assert split_of(stem, 10) == "val", row  # never a training photo
        assert (out / "images" / f"{name}.jpg").is_file()
        mask = np.asarray(Image.open(out / "masks" / f"{name}.png"))
        assert set(np.unique(mask)) <= {0, 255} and mask.any()
    backdrops = {row.split("\t")[4] for row in rows}
    assert backdrops >= {"white", "black", "red", "blue", "green", "yellow", "gradient"}
    assert {"texture", "photo1", "photo2"} <= backdrops
    assert (out / VALIDATION_ONLY).is_file() and len(MaskFolder(out, "train")) == 0

    again = tmp_path / "again"
    assert _build(str(again), "--shared", str(shared), "--per-source", "2").returncode == 0

    def digest(folder: Path) -> str:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()

    assert digest(out) == digest(again)
    refused = _build(str(out), "--shared", str(shared))  # never overwritten
    assert refused.returncode == 2 and "exists" in refused.stderr


def test_only_the_named_sources_are_swapped(tmp_path):
    from unetbg.training.config import resolve_config

    scenes = MaskFolder(make_mask_folder(tmp_path / "scenes", count=12, seed=6), "all")
    people = MaskFolder(make_mask_folder(tmp_path / "people", count=12, seed=7), "all")

    def identity(image, mask, ignore):
        return {"image": image, "mask": mask, "ignore": ignore}

    mix = MixedSamples(
        [scenes, people],
        [1, 1],
        identity,
        80,
        seed=2,
        swap=BackdropSwap(1.0),
        swappable=[False, True],
    )
    moved = {0: 0, 1: 0}
    for index in range(80):
        r, item = mix.plan()[index]
        original = mix.readers[r].load(item)[0]
        image = mix[index]["image"]
        moved[r] += image.shape != original.shape or not np.array_equal(image, original)
    assert moved[0] == 0 and moved[1] > 10
    with pytest.raises(ValueError, match="swap_sources names no training source: streets"):
        resolve_config("smoke", data=(f"masks:{tmp_path / 'people'}",), swap_sources=("streets",))


def test_distractors_are_laid_on_the_backdrop_and_never_labelled():
    from unetbg.data.composite import SwapSettings, add_distractors

    canvas = solid(120, 90, (0, 0, 0))
    thing = np.full((40, 40, 3), 255, np.uint8)
    out = add_distractors(canvas, [thing, thing], np.random.default_rng(1))
    assert not canvas.any() and out.shape == canvas.shape  # the input is left alone
    assert 0.005 < (out.max(axis=2) > 128).mean() < 0.6
    image, mask = _person()
    white_things = BackdropSwap(
        1.0,
        lambda i: np.full((60, 60, 3), 255, np.uint8),
        1,
        SwapSettings(distractors=1.0, backdrop_shares=(1, 0, 0, 0, 0, 0)),
    )
    seen = 0
    for seed in range(10):
        out, label, _ = white_things(image, mask, mask * 0, np.random.default_rng(seed))
        seen += int(((out.min(axis=2) > 240) & (label == 0)).sum() > 20)
    assert seen >= 5  # white things on the backdrop, outside the person's label


def test_a_close_up_centres_on_the_part_shown_not_the_whole_box():
    # A person lying across the photo: head at the top left, legs far to the right.
    image = np.zeros((120, 300, 3), np.uint8)
    mask = np.zeros((120, 300), np.uint8)
    mask[10:40, 10:40] = 1  # head
    mask[40:110, 10:290] = 1  # body reaching to the right
    out, label = composite(image, mask, solid(240, 180, (0, 0, 0)), FRAMINGS["head"])
    assert label.any()
    y0, y1, x0, x1 = person_box(label)
    assert y0 == round(0.05 * 240) and x0 < 90 < x1  # the head is in the middle


def test_a_cut_out_object_keeps_its_own_outline_and_is_never_labelled():
    from unetbg.data.composite import SwapSettings, add_distractors

    # A white disc cut from a white square: laid down, it is round, not a square or a blob.
    picture = np.full((50, 100, 3), 255, np.uint8)
    ys, xs = np.mgrid[0:50, 0:100]
    disc = (((ys - 24.5) / 25) ** 2 + ((xs - 49.5) / 50) ** 2 <= 1).astype(np.float32)
    canvas = solid(200, 200, (0, 0, 0))
    out = add_distractors(canvas, [(picture, disc)], np.random.default_rng(0))
    lit = out.max(axis=2) > 128
    rows, cols = np.nonzero(lit)
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert 0.7 < lit.sum() / box < 0.85  # an ellipse fills pi/4 of its box
    assert (cols.max() - cols.min() + 1) / (rows.max() - rows.min() + 1) == pytest.approx(
        2, rel=0.15
    )

    image, mask = _person()
    cut = BackdropSwap(
        1.0,
        settings=SwapSettings(distractors=1.0, backdrop_shares=(1, 0, 0, 0, 0, 0)),
        objects=lambda i: (picture, disc),
        object_count=1,
    )
    seen = 0
    for seed in range(12):
        out, label, _ = cut(image, mask, mask * 0, np.random.default_rng(seed))
        seen += int(((out.min(axis=2) > 240) & (label == 0)).sum() > 20)
    assert seen >= 4  # the objects lie on the backdrop, outside the person's label


def test_an_occluder_covers_part_of_the_person_and_the_label_loses_exactly_that():
    from unetbg.data.composite import occlude

    image, mask = _person()
    before = image.copy(), mask.copy()
    white = (np.full((40, 40, 3), 255, np.uint8), np.ones((40, 40), np.float32))
    covered = 0
    for seed in range(8):
        out, label = occlude(image, mask, white, np.random.default_rng(seed))
        assert np.array_equal(image, before[0]) and np.array_equal(mask, before[1])
        lost = (mask == 1) & (label == 0)
        # Every pixel the label lost is now the white thing, and the label never grows.
        assert not ((label == 1) & (mask == 0)).any()
        assert (out[lost].min(axis=1) > 240).all()
        # Where the thing lies fully opaque over the person, the person is no longer labelled.
        assert not ((out.min(axis=2) == 255) & (label == 1)).any()
        covered += int(lost.sum() > 50)
    assert covered >= 6  # centred inside the person's box: it nearly always covers some
    assert occlude(image, mask * 0, white, np.random.default_rng(0))[0] is image


def test_a_frame_cut_moves_the_person_over_an_edge():
    from unetbg.data.composite import cut_by_edge

    image, mask = _person()
    backdrop = solid(240, 180, (0, 0, 0))
    whole = Framing(1.0, 0.8, 0.1)
    _, full = composite(image, mask, backdrop, whole, feather=0)
    rows, cols = np.nonzero(full)
    assert rows.min() > 0 and rows.max() < 239 and cols.min() > 0 and cols.max() < 179
    edges_cut = set()
    for seed in range(40):
        framing = cut_by_edge(whole, np.random.default_rng(seed))
        _, label = composite(image, mask, backdrop, framing, feather=0)
        rows, cols = np.nonzero(label)
        if rows.size:
            touched = {
                name
                for name, touches in (
                    ("top", rows.min() == 0),
                    ("bottom", rows.max() == 239),
                    ("left", cols.min() == 0),
                    ("right", cols.max() == 179),
                )
                if touches
            }
            assert touched  # part of the person left the frame
            edges_cut |= touched
    assert edges_cut == {"top", "bottom", "left", "right"}


def test_hard_cases_darken_cut_and_cover_and_none_replays_the_old_draw():
    from unetbg.data.composite import SwapSettings

    image, mask = _person()
    plain = BackdropSwap(1.0, settings=SwapSettings(backdrop_shares=(1, 0, 0, 0, 0, 0)))
    zero = BackdropSwap(
        1.0, settings=SwapSettings(backdrop_shares=(1, 0, 0, 0, 0, 0), hard_cases=0.0)
    )
    hard = BackdropSwap(
        1.0, settings=SwapSettings(backdrop_shares=(1, 0, 0, 0, 0, 0), hard_cases=1.0)
    )
    for seed in range(5):
        a = plain(image, mask, mask * 0, np.random.default_rng(seed))
        b = zero(image, mask, mask * 0, np.random.default_rng(seed))
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    dark = 0
    for seed in range(10):
        out, label, ignore = hard(image, mask, mask * 0, np.random.default_rng(seed))
        assert not ignore.any() and out.shape[:2] == label.shape
        core = label.astype(bool)
        if core.sum() > 30:
            # The orange person (230, 140, 60) shaded to 20-60 % of its brightness.
            dark += int(np.median(out[core][:, 0]) < 0.65 * 230)
    assert dark >= 5
    first = hard(image, mask, mask * 0, np.random.default_rng(3))
    again = hard(image, mask, mask * 0, np.random.default_rng(3))
    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
