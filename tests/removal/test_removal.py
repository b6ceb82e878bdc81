"""unetbg.removal: folder planning on real trees, rendering, and processing real files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference_fixtures import person_photo, tiny_checkpoint, write_photo
from unetbg.inference import ModelInference
from unetbg.removal import (
    SKIP_EXISTS,
    SKIP_NOT_IMAGE,
    OutputOptions,
    PlanError,
    PlannedItem,
    parse_color,
    plan_files,
    plan_folder,
    process_images,
    render_output,
    unique_output_names,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ModelInference:
    return ModelInference(tiny_checkpoint(tmp_path_factory), device="cpu", batch_size=3)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _by_relative(items: list[PlannedItem]) -> dict[str, PlannedItem]:
    return {it.relative.as_posix(): it for it in items}


# --------------------------------------------------------------------------- planning


def test_plan_folder_mirrors_tree_and_skips_with_reasons(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    for rel in (
        "top.jpg",
        "sub/a.jpg",
        "sub/a.png",
        "sub/deeper/b.JPG",
        "name with space.webp",
        "ünïcödé.bmp",
        "-dash.tif",
        "anim.gif",
    ):
        write_photo(src / rel, 16, 12)
    (src / "notes.txt").write_text("not an image")
    write_photo(src / ".hidden.jpg", 16, 12)
    write_photo(src / ".cache" / "x.jpg", 16, 12)

    items = plan_folder(src, out)
    by = _by_relative(items)
    assert ".hidden.jpg" not in by and not any(k.startswith(".cache") for k in by)
    assert by["notes.txt"].skip_reason == SKIP_NOT_IMAGE and by["notes.txt"].output is None
    expected = {
        "top.jpg": "top.png",
        "sub/a.jpg": "sub/a.jpg.png",  # collides with sub/a.png: both keep their suffix
        "sub/a.png": "sub/a.png.png",
        "sub/deeper/b.JPG": "sub/deeper/b.png",
        "name with space.webp": "name with space.png",
        "ünïcödé.bmp": "ünïcödé.png",
        "-dash.tif": "-dash.png",
        "anim.gif": "anim.png",
    }
    for rel, name in expected.items():
        assert by[rel].skip_reason is None, rel
        assert by[rel].output == out.resolve() / name
        assert by[rel].source == src / rel
    # Deterministic, and planning creates nothing.
    assert plan_folder(src, out) == items
    assert not out.exists()


def test_plan_folder_existing_outputs_and_formats(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_photo(src / "a.jpg", 16, 12)
    write_photo(src / "b.jpg", 16, 12)
    out.mkdir()
    (out / "a.png").write_bytes(b"old")
    (out / "b.png").mkdir()

    by = _by_relative(plan_folder(src, out))
    assert by["a.jpg"].skip_reason == SKIP_EXISTS
    assert by["b.jpg"].skip_reason == "output path is an existing folder"
    by = _by_relative(plan_folder(src, out, overwrite=True))
    assert by["a.jpg"].skip_reason is None
    assert by["b.jpg"].skip_reason == "output path is an existing folder"
    assert _by_relative(plan_folder(src, out, "webp"))["a.jpg"].output.name == "a.webp"
    assert _by_relative(plan_folder(src, out, "jpeg"))["a.jpg"].output.name == "a.jpg"
    assert (out / "a.png").read_bytes() == b"old"


def test_plan_folder_refuses_overlapping_folders(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_photo(src / "a.jpg", 16, 12)
    with pytest.raises(PlanError, match="is the input folder"):
        plan_folder(src, src)
    with pytest.raises(PlanError, match="inside the input folder"):
        plan_folder(src, src / "out")
    with pytest.raises(PlanError, match="is inside the output folder"):
        plan_folder(src, tmp_path)
    with pytest.raises(PlanError, match="does not exist"):
        plan_folder(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PlanError, match="not a folder"):
        plan_folder(src, tmp_path / "file")
    # The same refusal through a symlinked output path.
    (tmp_path / "link").symlink_to(src)
    with pytest.raises(PlanError, match="inside the input folder"):
        plan_folder(src, tmp_path / "link" / "out")


def test_plan_folder_symlinks(tmp_path: Path) -> None:
    src, out, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    write_photo(src / "real" / "a.jpg", 16, 12)
    write_photo(elsewhere / "e.jpg", 16, 12)
    (src / "inside.jpg").symlink_to(src / "real" / "a.jpg")
    (src / "outside.jpg").symlink_to(elsewhere / "e.jpg")
    (src / "outdir").symlink_to(elsewhere)
    (src / "real" / "loop").symlink_to(src)
    (src / "alias").symlink_to(src / "real")
    (src / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    (src / "self.jpg").symlink_to(src / "self.jpg")
    (elsewhere / "back").symlink_to(src)  # a loop through a followed link
    out.mkdir()
    (src / "to_out").symlink_to(out)
    (src / "to_parent_of_out").symlink_to(tmp_path)

    by = _by_relative(plan_folder(src, out))
    assert by["inside.jpg"].skip_reason is None
    assert by["real/a.jpg"].skip_reason is None
    assert "outside the input folder" in by["outside.jpg"].skip_reason
    assert "outside the input folder" in by["outdir"].skip_reason
    assert by["real/loop"].skip_reason == "symlink loop"
    assert "symlinked folder inside the input folder" in by["alias"].skip_reason
    assert by["broken.jpg"].skip_reason == "broken symlink"
    assert by["self.jpg"].skip_reason == "symlink loop"

    by = _by_relative(plan_folder(src, out, follow_symlinks=True))
    assert by["to_out"].skip_reason == "symlink points into the output folder"
    assert by["to_parent_of_out"].skip_reason == "symlink points into the output folder"
    assert by["outside.jpg"].skip_reason is None
    assert by["outdir/e.jpg"].output == out.resolve() / "outdir" / "e.png"
    assert by["outdir/back"].skip_reason == "symlink loop"
    assert by["real/loop"].skip_reason == "symlink loop"
    assert by["alias/a.jpg"].skip_reason is None


def test_unique_output_names_resolves_every_clash() -> None:
    rel = [Path(p) for p in ("a.jpg", "a.png", "a.jpg.png", "A.JPEG", "b.png", "c.jpg", "c")]
    names = [n.as_posix() for n in unique_output_names(rel, ".png")]
    # a.jpg, a.png and A.JPEG all want a.png: each keeps its full name; a.jpg.png then
    # clashes with a.jpg's new name and keeps its own full name in turn.
    assert names == [
        "a.jpg.png",
        "a.png.png",
        "a.jpg.png.png",
        "A.JPEG.png",
        "b.png",
        "c.jpg.png",
        "c.png",
    ]
    assert len({n.casefold() for n in names}) == len(names)
    # A file output may not take the name of a folder holding outputs.
    folder_clash = unique_output_names([Path("x.jpg"), Path("x.png/y.jpg")], ".png")
    assert folder_clash == [Path("x.jpg.png"), Path("x.png/y.png")]
    assert unique_output_names(rel, ".png") == unique_output_names(rel, ".png")


def test_plan_files(tmp_path: Path) -> None:
    write_photo(tmp_path / "x" / "a.jpg", 16, 12)
    write_photo(tmp_path / "y" / "a.jpg", 16, 12)
    write_photo(tmp_path / "y" / "b.png", 16, 12)
    items = plan_files(
        [tmp_path / "x/a.jpg", tmp_path / "y/a.jpg", tmp_path / "y/b.png"], tmp_path / "o"
    )
    assert [it.output.name for it in items] == ["a.jpg.png", "a.jpg~1.png", "b.png"]
    with pytest.raises(PlanError, match="over its input"):
        plan_files([tmp_path / "y" / "b.png"], tmp_path / "y")
    # jpeg output next to a jpeg input with the same name: also onto the input.
    with pytest.raises(PlanError, match="over its input"):
        plan_files([tmp_path / "x" / "a.jpg"], tmp_path / "x", "jpeg")
    # Into an input's own folder (where unnamed photos live) or a folder above it: refused.
    with pytest.raises(PlanError, match=r"holds the input .*x/a\.jpg"):
        plan_files([tmp_path / "y" / "b.png", tmp_path / "x" / "a.jpg"], tmp_path / "x")
    with pytest.raises(PlanError, match="holds the input"):
        plan_files([tmp_path / "x" / "a.jpg"], tmp_path)
    assert plan_files([tmp_path / "x" / "a.jpg"], tmp_path / "x" / "cut")[0].skip_reason is None


# --------------------------------------------------------------------- options, render


def test_output_options_validation() -> None:
    assert OutputOptions(format="JPG", kind="color").format == "jpeg"
    assert OutputOptions(color="#0f0").color == (0, 255, 0)
    assert parse_color("white") == (255, 255, 255) and parse_color([1, 2, 3]) == (1, 2, 3)
    with pytest.raises(ValueError, match="JPEG has no alpha"):
        OutputOptions(kind="cutout", format="jpeg")
    with pytest.raises(ValueError, match="JPEG has no alpha"):
        OutputOptions(kind="mask", format="jpeg")
    with pytest.raises(ValueError, match="unknown kind"):
        OutputOptions(kind="blur")
    with pytest.raises(ValueError, match="unknown output format"):
        OutputOptions(format="gif")
    with pytest.raises(ValueError, match="between 0 and 1"):
        OutputOptions(threshold=1.5)
    with pytest.raises(ValueError, match="cannot parse colour"):
        OutputOptions(kind="color", color="#12345")
    with pytest.raises(ValueError, match="needs a background"):
        OutputOptions(kind="background")
    with pytest.raises(ValueError, match="kind is 'cutout'"):
        OutputOptions(background=np.zeros((4, 4, 3), np.uint8))


def test_render_output_kinds() -> None:
    rgb = np.full((2, 3, 3), 200, np.uint8)
    prob = np.array([[0.0, 0.5, 1.0], [0.25, 0.75, 0.6]], np.float32)

    cut = render_output(rgb, prob, OutputOptions())
    assert cut.mode == "RGBA" and cut.size == (3, 2)
    np.testing.assert_array_equal(np.asarray(cut)[..., 3], [[0, 128, 255], [64, 191, 153]])
    np.testing.assert_array_equal(np.asarray(cut)[..., :3], rgb)
    hard = render_output(rgb, prob, OutputOptions(kind="mask", threshold=0.6))
    assert hard.mode == "L"
    np.testing.assert_array_equal(np.asarray(hard), [[0, 0, 255], [0, 255, 255]])
    color = np.asarray(render_output(rgb, prob, OutputOptions(kind="color", color="#000000")))
    np.testing.assert_array_equal(color[..., 0], [[0, 100, 200], [50, 150, 120]])

    # Background: a 4×1 stripe covers a 3×2 photo by scaling to 4×2... then centre-cropping.
    stripe = np.array([[[10, 0, 0], [20, 0, 0], [30, 0, 0], [40, 0, 0]]], np.uint8)
    opts = OutputOptions(kind="background", background=stripe)
    back = np.asarray(render_output(rgb, np.zeros((2, 3), np.float32), opts, stripe))
    assert back.shape == (2, 3, 3)
    assert np.all(np.diff(back[0, :, 0].astype(int)) > 0)  # left-to-right gradient kept
    assert np.all(back[..., 1] == 0)


# ------------------------------------------------------------------------- processing


def test_process_images_writes_outputs_and_isolates_failures(
    tmp_path: Path, model: ModelInference
) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_photo(src / "one.jpg", 50, 30, quality=95)
    write_photo(src / "sub" / "two.png", 33, 41)
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (src / "empty.png").write_bytes(b"")
    write_photo(src / "three.webp", 20, 20)
    write_photo(src / "four.bmp", 21, 19)
    (src / "readme.txt").write_text("skip me")
    before = _tree_digest(src)

    items = plan_folder(src, out)
    seen: list[str] = []
    results = process_images(
        model, items, OutputOptions(), on_result=lambda it, r: seen.append(it.relative.as_posix())
    )

    assert len(results) == len(items)
    assert sorted(seen) == sorted(it.relative.as_posix() for it in items)
    by = {it.relative.as_posix(): r for it, r in zip(items, results, strict=True)}
    assert by["readme.txt"].skipped and by["readme.txt"].error == SKIP_NOT_IMAGE
    assert not by["empty.png"].ok and by["empty.png"].error == "empty file (0 bytes)"
    assert not by["sub/broken.jpg"].ok and "JPEG" in by["sub/broken.jpg"].error
    for rel, size in {
        "one.jpg": (50, 30),
        "sub/two.png": (33, 41),
        "three.webp": (20, 20),
        "four.bmp": (21, 19),
    }.items():
        assert by[rel].ok, by[rel].error
        assert by[rel].seconds > 0
        with Image.open(by[rel].output) as im:
            assert im.format == "PNG" and im.mode == "RGBA" and im.size == size
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "four.png",
        "one.png",
        "sub/two.png",
        "three.png",
    ]
    assert _tree_digest(src) == before

    # Alpha is the model's probability for the same pixels.
    photo = np.asarray(Image.open(src / "sub" / "two.png").convert("RGB"))
    (prob,) = model.predict_arrays([photo])
    alpha = np.asarray(Image.open(out / "sub" / "two.png"))[..., 3]
    np.testing.assert_array_equal(alpha, np.rint(prob * 255).astype(np.uint8))

    # Second run: everything already there is skipped, nothing rewritten.
    again = process_images(model, plan_folder(src, out), OutputOptions())
    assert {r.error for r in again if r.skipped} == {SKIP_EXISTS, SKIP_NOT_IMAGE}


def test_process_images_never_writes_outside_output_dir(
    tmp_path: Path, model: ModelInference
) -> None:
    src, out, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    write_photo(src / "sub" / "a.jpg", 24, 16)
    write_photo(src / "b.jpg", 24, 16)
    elsewhere.mkdir()
    items = plan_folder(src, out, "webp")
    # After planning, someone turns out/sub into a link that leaves the output folder.
    out.mkdir()
    (out / "sub").symlink_to(elsewhere)

    results = process_images(model, items, OutputOptions(kind="mask", format="webp"))
    by = {it.relative.as_posix(): r for it, r in zip(items, results, strict=True)}
    assert not by["sub/a.jpg"].ok and "outside the output folder" in by["sub/a.jpg"].error
    assert list(elsewhere.iterdir()) == []
    assert by["b.jpg"].ok
    with Image.open(out / "b.webp") as im:
        # WebP has no grayscale mode: the (lossless) mask comes back as equal R, G, B.
        assert im.format == "WEBP" and im.size == (24, 16)
        pixels = np.asarray(im.convert("RGB"))
    (prob,) = model.predict_arrays([np.asarray(Image.open(src / "b.jpg").convert("RGB"))])
    for c in range(3):
        np.testing.assert_array_equal(pixels[..., c], np.rint(prob * 255).astype(np.uint8))


def test_process_images_color_and_background_jpeg(tmp_path: Path, model: ModelInference) -> None:
    src = write_photo(tmp_path / "p.png", 40, 30)
    bg = write_photo(tmp_path / "bg.png", 90, 20)
    photo = person_photo(40, 30)
    (prob,) = model.predict_arrays([photo])
    for kind, extra in (("color", {"color": "#00ff00"}), ("background", {"background": bg})):
        options = OutputOptions(kind=kind, format="jpeg", threshold=0.5, **extra)
        (item,) = plan_files([src], tmp_path / kind, "jpeg")
        (result,) = process_images(model, [item], options)
        assert result.ok, result.error
        with Image.open(result.output) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (40, 30)
            got = np.asarray(im).astype(int)
        person = prob >= 0.5
        if kind == "color" and (~person).sum() > 20:
            # Hard threshold: background pixels are the colour (up to JPEG error).
            assert np.abs(got[~person] - [0, 255, 0]).mean() < 25
        if person.sum() > 20:
            assert np.abs(got[person] - photo[person]).mean() < 25


def test_process_images_bad_background_raises_before_work(
    tmp_path: Path, model: ModelInference
) -> None:
    src = write_photo(tmp_path / "p.png", 20, 20)
    (tmp_path / "bg.jpg").write_bytes(b"")
    items = plan_files([src], tmp_path / "out")
    with pytest.raises(ValueError, match="empty file"):
        process_images(
            model, items, OutputOptions(kind="background", background=tmp_path / "bg.jpg")
        )
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="planned for another format"):
        process_images(model, items, OutputOptions(format="webp"))


def test_output_permissions_follow_umask(tmp_path: Path, model: ModelInference) -> None:
    src = write_photo(tmp_path / "p.png", 20, 20)
    (result,) = process_images(model, plan_files([src], tmp_path / "out"), OutputOptions())
    mask = os.umask(0)
    os.umask(mask)
    assert result.ok and (result.output.stat().st_mode & 0o777) == 0o666 & ~mask


def test_output_appearing_after_planning_is_not_replaced(
    tmp_path: Path, model: ModelInference
) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_photo(src / "a.jpg", 20, 16)
    write_photo(src / "b.jpg", 20, 16)
    items = plan_folder(src, out)
    assert [it.skip_reason for it in items] == [None, None]
    # Someone else's file lands on a.png between planning and writing.
    out.mkdir()
    (out / "a.png").write_bytes(b"not ours")
    results = process_images(model, items, OutputOptions())
    assert results[0].skipped and results[0].error == SKIP_EXISTS and not results[0].ok
    assert (out / "a.png").read_bytes() == b"not ours"
    assert results[1].ok
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]  # no temporaries

    # Planned with overwrite: the newer file is replaced, as asked.
    (out / "b.png").write_bytes(b"stale")
    again = process_images(model, plan_folder(src, out, overwrite=True), OutputOptions())
    assert all(r.ok for r in again)
    with Image.open(out / "a.png") as im, Image.open(out / "b.png") as im2:
        assert im.size == im2.size == (20, 16)
