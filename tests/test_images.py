"""unetbg.images: every odd input is built as a real file and read back."""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetbg.images import (
    ImageError,
    read_image,
    save_image_atomic,
    to_rgb_array,
    write_atomic,
)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None) -> bytes:
    """A PNG written byte by byte (Pillow cannot write 16-bit RGB or lying headers)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
    if rows is not None:
        out += _png_chunk(b"IDAT", zlib.compress(rows))
    return out + _png_chunk(b"IEND", b"")


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
    }


@pytest.fixture()
def photo() -> np.ndarray:
    # Smooth content so JPEG round trips stay close to the original.
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8)


def test_rgb_jpeg_and_png_named_jpg(tmp_path: Path, photo: np.ndarray) -> None:
    Image.fromarray(photo).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(photo).save(tmp_path / "really_png.jpg", format="PNG")
    before = _digest(tmp_path)

    jpeg = read_image(tmp_path / "a.jpg")
    assert jpeg.shape == (48, 64, 3) and jpeg.dtype == np.uint8
    assert np.abs(jpeg.astype(int) - photo).mean() < 3
    # Detected by content: lossless PNG despite the .jpg name.
    np.testing.assert_array_equal(read_image(tmp_path / "really_png.jpg"), photo)
    assert _digest(tmp_path) == before


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:20, :40] = (255, 0, 0)  # red top-left block in the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(stored).save(tmp_path / "o.jpg", exif=exif, quality=95)

    shown = read_image(tmp_path / "o.jpg")
    assert shown.shape == (80, 40, 3)
    # After a clockwise quarter turn the stored top-left corner is at the top right.
    assert shown[:40, 20:].mean(axis=(0, 1))[0] > 200
    assert shown[:40, :20].mean() < 30


def test_grayscale_la_rgba_and_bilevel(tmp_path: Path, photo: np.ndarray) -> None:
    gray = photo[:, :, 0]
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    alpha = np.full_like(gray, 7)
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(tmp_path / "la.png")
    Image.fromarray(np.dstack([photo, alpha]), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(gray > 100).save(tmp_path / "one.png")

    for name in ("l.png", "la.png"):
        out = read_image(tmp_path / name)
        assert out.shape == (48, 64, 3)
        for c in range(3):
            np.testing.assert_array_equal(out[:, :, c], gray)
    # Alpha is dropped, colours kept untouched (not premultiplied).
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), photo)
    bilevel = read_image(tmp_path / "one.png")
    np.testing.assert_array_equal(bilevel[:, :, 1], np.where(gray > 100, 255, 0))


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 1000, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")

    out = read_image(tmp_path / "g16.png")
    # 1000 / 257 ≈ 3.9 -> 4; clipping would have given 255.
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 4, 128, 255])


def test_32bit_integer_tiff(tmp_path: Path) -> None:
    values = np.array([[0, 257, 65535]], dtype=np.int32)
    Image.fromarray(values, "I").save(tmp_path / "i32.tif")
    assert Image.open(tmp_path / "i32.tif").mode == "I"
    np.testing.assert_array_equal(read_image(tmp_path / "i32.tif")[0, :, 2], [0, 1, 255])


def test_16bit_rgb_png_written_by_hand(tmp_path: Path) -> None:
    pixels = np.array([[[65535, 0, 32896], [257, 65280, 0]]], dtype=">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    (tmp_path / "rgb16.png").write_bytes(_raw_png(2, 1, 16, 2, rows))

    out = read_image(tmp_path / "rgb16.png")
    assert out.shape == (1, 2, 3)
    # Pillow keeps the high byte: 65535 -> 255, 32896 -> 128, 65280 -> 255, 257 -> 1.
    np.testing.assert_array_equal(out[0], [[255, 0, 128], [1, 255, 0]])


def test_palette_with_transparency_and_animated_gif(tmp_path: Path) -> None:
    pal = Image.new("P", (8, 6), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    pal.putpixel((0, 0), 0)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)

    frames = [Image.new("RGB", (10, 10), c) for c in ((250, 0, 0), (0, 0, 250))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "palette images with transparency" warning
        out = read_image(tmp_path / "pal.png")
    assert tuple(out[3, 3]) == (10, 200, 30)
    assert tuple(out[0, 0]) == (0, 0, 0)  # the transparent entry's colour; alpha dropped
    first = read_image(tmp_path / "anim.gif")
    assert first[:, :, 0].min() > 200 and first[:, :, 2].max() < 50


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:, 8:, 0] = 255  # full cyan on the right half, white on the left
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"

    out = read_image(tmp_path / "cmyk.jpg").astype(int)
    assert out[:, :4].min() > 240
    assert out[:, 12:, 0].max() < 20 and out[:, 12:, 1:].min() > 235


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty file (0 bytes)"),
        ("notes.jpg", b"these are my notes, not a photo\n" * 3, "not a recognised image format"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageError) as err:
        read_image(tmp_path / name)
    assert err.value.reason == reason
    assert str(tmp_path / name) in str(err.value)


def test_truncated_jpeg_is_not_half_decoded(tmp_path: Path, photo: np.ndarray) -> None:
    Image.fromarray(photo).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    before = _digest(tmp_path)

    with pytest.raises(ImageError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")
    assert _digest(tmp_path) == before


def test_corrupt_png_chunks(tmp_path: Path, photo: np.ndarray) -> None:
    Image.fromarray(photo).save(tmp_path / "ok.png")
    good = (tmp_path / "ok.png").read_bytes()
    idat = good.index(b"IDAT")
    (length,) = struct.unpack(">I", good[idat - 4 : idat])
    crc_at = idat + 4 + length
    # Only the IDAT checksum is wrong: the pixels would still decode without a CRC check.
    bad_crc = (
        good[:crc_at] + bytes(b ^ 0xFF for b in good[crc_at : crc_at + 4]) + good[crc_at + 4 :]
    )
    (tmp_path / "bad_crc.png").write_bytes(bad_crc)
    bad_data = bytearray(good)
    bad_data[idat + 30] ^= 0xFF
    (tmp_path / "bad_data.png").write_bytes(bytes(bad_data))
    header = bytearray(good)
    header[20] ^= 0xFF  # inside IHDR
    (tmp_path / "bad_header.png").write_bytes(bytes(header))

    for name in ("bad_crc.png", "bad_data.png", "bad_header.png"):
        with pytest.raises(ImageError, match="corrupt PNG"):
            read_image(tmp_path / name)


def test_pixel_limit(tmp_path: Path, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(photo).save(tmp_path / "p.png")
    with pytest.raises(ImageError) as err:
        read_image(tmp_path / "p.png", max_pixels=1000)
    assert "64×48 = 3,072" in err.value.reason and "1,000" in err.value.reason
    assert read_image(tmp_path / "p.png", max_pixels=3072).shape == (48, 64, 3)

    # The default comes from Settings (UNETBG_MAX_IMAGE_PIXELS).
    monkeypatch.setenv("UNETBG_MAX_IMAGE_PIXELS", "3000")
    with pytest.raises(ImageError, match="too many pixels"):
        read_image(tmp_path / "p.png")


def test_decompression_bomb_headers(tmp_path: Path) -> None:
    # Headers that promise huge images with almost no data: refused before decoding.
    (tmp_path / "big.png").write_bytes(_raw_png(10_000, 10_000, 8, 2, None))
    (tmp_path / "huge.png").write_bytes(_raw_png(30_000, 30_000, 8, 2, None))
    with pytest.raises(ImageError, match=r"claims 10000×10000 pixels \(100 megapixels\)"):
        read_image(tmp_path / "big.png")
    with pytest.raises(ImageError, match="refused as a decompression bomb"):
        read_image(tmp_path / "huge.png")


def test_bomb_message_gives_claimed_size_not_the_limit(tmp_path: Path, photo: np.ndarray) -> None:
    # A 45-byte header claiming 50000×50000: no photo to allow, so no hint to raise the
    # limit for it.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_raw_png(50_000, 50_000, 8, 2, None))
    with pytest.raises(ImageError) as err:
        read_image(bomb)
    size = bomb.stat().st_size
    assert err.value.reason == (
        f"claims 50000×50000 pixels (2.5 gigapixels) in a {size}-byte file: "
        "refused as a decompression bomb"
    )
    # A real image over a (low) limit: its size and the setting that allows it.
    Image.fromarray(photo).save(tmp_path / "p.png")
    with pytest.raises(ImageError) as err:
        read_image(tmp_path / "p.png", max_pixels=1000)
    assert "UNETBG_MAX_IMAGE_PIXELS=3072" in err.value.reason
    assert "refused as a decompression bomb" not in err.value.reason


def test_missing_folder_and_permission(tmp_path: Path, photo: np.ndarray) -> None:
    with pytest.raises(ImageError, match="file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)
    locked = tmp_path / "locked.png"
    Image.fromarray(photo).save(locked)
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as a user that ignores file permissions (root)")
        with pytest.raises(ImageError, match="permission denied"):
            read_image(locked)
    finally:
        locked.chmod(0o644)


def test_file_objects_and_arrays(tmp_path: Path, photo: np.ndarray) -> None:
    Image.fromarray(photo).save(tmp_path / "p.png")
    with open(tmp_path / "p.png", "rb") as fh:
        np.testing.assert_array_equal(read_image(fh), photo)
    rgba = np.dstack([photo, np.zeros(photo.shape[:2], np.uint8)])
    np.testing.assert_array_equal(to_rgb_array(rgba), photo)
    assert to_rgb_array(photo[:, :, 0]).shape == (48, 64, 3)
    with pytest.raises(ImageError, match="uint8"):
        to_rgb_array(photo.astype(np.float32))
    with pytest.raises(ImageError, match="shape"):
        to_rgb_array(np.zeros((4, 4, 2), np.uint8))


def test_save_image_atomic(tmp_path: Path, photo: np.ndarray) -> None:
    target = tmp_path / "out.png"
    save_image_atomic(Image.fromarray(photo), target, "PNG")
    np.testing.assert_array_equal(np.asarray(Image.open(target)), photo)
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    before = target.read_bytes()

    # JPEG cannot hold RGBA: the encoder fails half-way, the old file must survive.
    rgba = Image.fromarray(np.dstack([photo, photo[:, :, 0]]), "RGBA")
    with pytest.raises(OSError):
        save_image_atomic(rgba, target, "JPEG")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temp file left

    write_atomic(tmp_path / "raw.bin", b"abc")
    assert (tmp_path / "raw.bin").read_bytes() == b"abc"


def test_atomic_writes_without_overwrite_never_replace(tmp_path: Path, photo: np.ndarray) -> None:
    target = tmp_path / "out.png"
    save_image_atomic(Image.fromarray(photo), target, "PNG", overwrite=False)
    np.testing.assert_array_equal(np.asarray(Image.open(target)), photo)
    before = target.read_bytes()
    with pytest.raises(FileExistsError):
        save_image_atomic(Image.fromarray(photo[:8, :8]), target, "PNG", overwrite=False)
    assert target.read_bytes() == before

    raw = tmp_path / "raw.bin"
    write_atomic(raw, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        write_atomic(raw, b"second", overwrite=False)
    assert raw.read_bytes() == b"first"
    write_atomic(raw, b"third")  # the default replaces
    assert raw.read_bytes() == b"third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "raw.bin"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_temporary_target_recognises_only_our_unfinished_writes(tmp_path):
    from unetbg.durable import temporary_target

    target = tmp_path / "a.png"

    class Boom(Exception):
        pass

    # Capture the temporary's name by failing after it exists, before it is renamed.
    seen = []

    def on_write(fh):
        seen.extend(p.name for p in tmp_path.iterdir())
        raise Boom

    with pytest.raises(Boom):
        save_image_atomic(_FailingImage(on_write), target, "PNG")
    assert len(seen) == 1 and temporary_target(seen[0]) == "a.png"
    assert not list(tmp_path.iterdir())  # removed on failure
    assert temporary_target("a.png") is None
    assert temporary_target(".a.png.xyz.tmp") is None


class _FailingImage:
    """Stands in for a PIL image whose save() fails midway (as a killed writer would)."""

    def __init__(self, on_write):
        self.on_write = on_write

    def save(self, fh, format=None, **params):
        self.on_write(fh)
