"""unetbg.inference.ModelInference with a real checkpoint file on the CPU."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference_fixtures import person_photo, tiny_checkpoint, write_photo
from unetbg.edges import refine_probability
from unetbg.images import ImageError
from unetbg.inference import ModelInference
from unetbg.model import CheckpointError, load_checkpoint, save_checkpoint
from unetbg.removal import SKIP_EXISTS, SKIP_NOT_IMAGE, OutputOptions, PipelineLimits
from unetbg.weights import SHIPPED


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> ModelInference:
    return ModelInference(checkpoint, device="cpu", batch_size=4)


def test_loads_once_and_logs_device(checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="unetbg.inference"):
        mi = ModelInference(checkpoint, device="auto", batch_size=2)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert mi.device.type == expected
    assert f"on {mi.device}" in caplog.text and str(checkpoint) in caplog.text
    assert mi.preprocessing.image_size == 64


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_an_error(checkpoint: Path) -> None:
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        ModelInference(checkpoint, device="cuda")


def test_bad_checkpoint_and_batch_size(tmp_path: Path, checkpoint: Path) -> None:
    (tmp_path / "x.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        ModelInference(tmp_path / "x.pth", device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        ModelInference(checkpoint, device="cpu", batch_size=0)


def test_predict_mask_accepts_paths_pil_and_arrays(tmp_path: Path, model: ModelInference) -> None:
    path = write_photo(tmp_path / "p.png", 70, 45)
    photo = person_photo(70, 45)
    masks = model.predict_mask([path, Image.open(path), photo, str(path)])
    assert len(masks) == 4
    for m in masks:
        assert m.shape == (45, 70) and m.dtype == np.float32
        assert m.min() >= 0.0 and m.max() <= 1.0
        np.testing.assert_allclose(m, masks[0], atol=1e-6)
    # One image alone is still a list; a threshold gives boolean masks.
    (single,) = model.predict_mask(photo, threshold=0.5)
    assert single.dtype == bool
    np.testing.assert_array_equal(single, masks[0] >= 0.5)
    with pytest.raises(ImageError, match="empty file"):
        (tmp_path / "e.jpg").write_bytes(b"")
        model.predict_mask([tmp_path / "e.jpg"])


def test_batching_does_not_change_results(checkpoint: Path) -> None:
    images = [person_photo(w, h) for w, h in ((64, 64), (90, 50), (31, 77), (128, 96), (40, 41))]
    one = ModelInference(checkpoint, device="cpu", batch_size=1).predict_mask(images)
    many = ModelInference(checkpoint, device="cpu", batch_size=8).predict_mask(images)
    for a, b, img in zip(one, many, images, strict=True):
        assert a.shape == img.shape[:2]
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_remove_background_keeps_size_and_orientation(
    tmp_path: Path, model: ModelInference
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # displayed rotated: stored 60×40 is shown as 40×60
    src = write_photo(tmp_path / "in.jpg", 60, 40, exif=exif, quality=95)
    before = src.read_bytes()

    image = model.remove_background(src, tmp_path / "out" / "cut.png")
    assert image.mode == "RGBA" and image.size == (40, 60)
    with Image.open(tmp_path / "out" / "cut.png") as written:
        assert written.format == "PNG" and written.size == (40, 60)
    # The format follows the suffix when no options are given.
    model.remove_background(src, tmp_path / "cut.webp")
    with Image.open(tmp_path / "cut.webp") as written:
        assert written.format == "WEBP" and written.mode == "RGBA"
    assert src.read_bytes() == before

    # An odd size survives exactly, for every kind.
    odd = person_photo(37, 23)
    bg = person_photo(5, 90)
    for options in (
        OutputOptions(kind="mask"),
        OutputOptions(kind="color", color="red", format="jpeg"),
        OutputOptions(kind="background", background=bg, threshold=0.5),
    ):
        assert model.remove_background(odd, options=options).size == (37, 23)


def test_remove_background_refusals(tmp_path: Path, model: ModelInference) -> None:
    src = write_photo(tmp_path / "a.png", 30, 20)
    before = src.read_bytes()
    with pytest.raises(ValueError, match="overwrite the input"):
        model.remove_background(src, src)
    with pytest.raises(ValueError, match="JPEG has no alpha"):
        model.remove_background(src, tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="jpeg suffix but format is png"):
        model.remove_background(src, tmp_path / "b.jpg", OutputOptions())
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_batch_process_summary(tmp_path: Path, model: ModelInference) -> None:
    src, out = tmp_path / "photos", tmp_path / "cutouts"
    write_photo(src / "a.jpg", 50, 40)
    write_photo(src / "a.png", 40, 50)
    write_photo(src / "trip" / "b.webp", 33, 33)
    (src / "trip" / "c.jpg").write_bytes(b"\xff\xd8\xff")
    (src / "list.csv").write_text("a,b\n")

    summary = model.batch_process(src, out, kind="mask")
    assert (summary.processed, summary.failed, summary.skipped) == (3, 1, 1)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a.jpg.png", "a.png.png", "trip/b.png"]
    with Image.open(out / "a.png.png") as im:
        assert im.mode == "L" and im.size == (40, 50)
    failed = [r for r in summary.results if not r.ok and not r.skipped]
    assert failed[0].source == src / "trip" / "c.jpg" and "JPEG" in failed[0].error
    assert {r.error for r in summary.results if r.skipped} == {SKIP_NOT_IMAGE}

    again = model.batch_process(src, out, options=OutputOptions(kind="mask"))
    assert again.processed == 0 and again.skipped == 4
    assert SKIP_EXISTS in {r.error for r in again.results}
    with pytest.raises(TypeError, match="not both"):
        model.batch_process(src, out, options=OutputOptions(), kind="mask")


def test_flip_average_makes_masks_mirror_symmetric(tmp_path: Path, checkpoint: Path) -> None:
    # Wider than tall: the letterbox pads only above and below, so it mirrors exactly.
    photo = person_photo(96, 64)
    mirrored = np.ascontiguousarray(photo[:, ::-1])
    plain = ModelInference(checkpoint, device="cpu")
    assert plain.preprocessing.flip_average is False  # what a checkpoint says by default
    a, b = plain.predict_mask([photo, mirrored])
    assert np.abs(a - b[:, ::-1]).max() > 1e-3  # the network alone is not symmetric
    flipped = ModelInference(checkpoint, device="cpu", flip_average=True)
    fa, fb = flipped.predict_mask([photo, mirrored])
    np.testing.assert_allclose(fa, fb[:, ::-1], atol=1e-4)
    assert np.abs(fa - a).max() > 1e-3  # and it changed the masks

    # A checkpoint that asks for it gets it by default; the argument still turns it off.
    state = load_checkpoint(checkpoint, map_location="cpu")
    state["preprocessing"]["flip_average"] = True
    save_checkpoint(tmp_path / "flip.pth", state)
    default = ModelInference(tmp_path / "flip.pth", device="cpu")
    assert default.preprocessing.flip_average is True
    np.testing.assert_allclose(default.predict_mask(photo)[0], fa, atol=1e-5)
    off = ModelInference(tmp_path / "flip.pth", device="cpu", flip_average=False)
    np.testing.assert_allclose(off.predict_mask(photo)[0], a, atol=1e-5)


def test_refine_edges_once_on_every_path(tmp_path: Path) -> None:
    # The shipped model: its masks have outlines to move (the tiny one's are all ~0.5).
    checkpoint = SHIPPED
    src = tmp_path / "in"
    path = write_photo(src / "p.png", 240, 160)  # lossless: the same pixels read back
    photo = np.asarray(Image.open(path).convert("RGB"))
    plain = ModelInference(checkpoint, device="cpu", refine_edges=False)
    refined = ModelInference(checkpoint, device="cpu", refine_edges=True)
    (raw,) = plain.predict_mask(photo)
    (got,) = refined.predict_mask(photo)
    np.testing.assert_allclose(got, refine_probability(raw, photo, refined.preprocessing))
    assert np.abs(got - raw).max() > 0.05  # it changed the mask

    # The folder loop refines in its writer threads, beside the network: the same mask as
    # predict_mask, refined once (not skipped, not twice), serial or pipelined.
    for limits in (PipelineLimits(serial=True), PipelineLimits(writers=2)):
        out = tmp_path / f"out-{limits.serial}"
        refined.limits = limits
        assert refined.batch_process(src, out, kind="mask").processed == 1
        written = np.asarray(Image.open(out / "p.png"), dtype=np.int16)
        assert np.abs(written - np.rint(got * 255)).max() <= 1, limits

    # By default what the checkpoint says (off when it says nothing, as older ones);
    # the argument still turns it off.
    state = load_checkpoint(checkpoint, map_location="cpu")
    for says, expected in ((None, raw), (False, raw), (True, got)):
        state["preprocessing"].pop("refine_edges", None)
        if says is not None:
            state["preprocessing"]["refine_edges"] = says
        save_checkpoint(tmp_path / f"{says}.pth", state)
        own = ModelInference(tmp_path / f"{says}.pth", device="cpu")
        np.testing.assert_allclose(own.predict_mask(photo)[0], expected, atol=1e-6)
    off = ModelInference(tmp_path / "True.pth", device="cpu", refine_edges=False)
    np.testing.assert_allclose(off.predict_mask(photo)[0], raw, atol=1e-6)
