"""What a failed image says when its file is hostile (issue 11, "clearer errors on
hostile files"): the decoder's own words in the item's reason, nothing on stderr, our
pixel limit and how to raise it, one wording for a truncated PNG. Real files, built byte
by byte; the real libtiff and Pillow."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetbg.images import ImageError, read_image


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def _png_header(width: int, height: int) -> bytes:
    """A PNG that promises ``width×height`` RGB pixels and holds none."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


def _webp_compressed_tiff() -> bytes:
    """A valid little TIFF whose compression tag says WEBP, which libtiff lacks here."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "TIFF", compression="tiff_deflate")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack("<H", data[entry : entry + 2])[0] == 259:  # Compression
            data[entry + 8 : entry + 10] = struct.pack("<H", 50001)  # COMPRESSION_WEBP
    return bytes(data)


def test_libtiff_reasons_go_into_the_items_reason_not_stderr(tmp_path: Path, capfd):
    bad = tmp_path / "webp.tif"
    bad.write_bytes(_webp_compressed_tiff())
    with pytest.raises(ImageError) as err:
        read_image(bad)
    assert err.value.reason == "corrupt TIFF data (WEBP compression support is not configured)"
    assert capfd.readouterr().err == ""  # libtiff printed "tempfile.tif: ..." here before

    # Per thread: an image read meanwhile in another thread gets none of it.
    good = tmp_path / "good.png"
    Image.new("RGB", (32, 24), "blue").save(good)
    reasons: dict[str, str] = {}

    def read(path: Path) -> None:
        for _ in range(20):
            try:
                read_image(path)
                reasons.setdefault(path.name, "ok")
            except ImageError as exc:
                reasons[path.name] = exc.reason

    threads = [threading.Thread(target=read, args=(p,)) for p in (bad, good, bad, good)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reasons == {"webp.tif": err.value.reason, "good.png": "ok"}
    assert capfd.readouterr().err == ""


def test_remove_says_it_per_file_and_keeps_stderr_to_that(tmp_path: Path):
    from inference_fixtures import write_photo
    from service_fixtures import make_checkpoint

    bad = tmp_path / "webp.tif"
    bad.write_bytes(_webp_compressed_tiff())
    good = write_photo(tmp_path / "good.jpg", 40, 30)
    checkpoint = make_checkpoint(tmp_path / "model.pth")
    exe = Path(sys.executable).with_name("unetbg")
    args = [str(exe), "remove", bad, good, "-o", tmp_path / "out", "--checkpoint", checkpoint]
    done = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert f"error: {bad}: corrupt TIFF data (WEBP compression support is not configured)" in lines
    assert not any("tempfile.tif" in line or "not configured" in line and str(bad) not in line
                   for line in lines), lines  # fmt: skip


def test_pixel_limit_messages_cite_ours_and_how_to_raise_it(tmp_path: Path):
    huge = tmp_path / "huge.png"  # above Pillow's own hard limit (2 × 89,478,485)
    huge.write_bytes(_png_header(30_000, 30_000))
    with pytest.raises(ImageError) as err:
        read_image(huge)
    reason = err.value.reason
    assert reason.startswith("claims 30000×30000 pixels (900 megapixels) in a 45-byte file")
    assert "UNETBG_MAX_IMAGE_PIXELS" not in reason and "178,956,970" not in reason

    # An ICNS whose icon is a PNG promising 900 M pixels: the size shows only on load.
    icon = _png_header(30_000, 30_000)
    entry = b"ic10" + struct.pack(">I", 8 + len(icon)) + icon
    icns = tmp_path / "bomb.icns"
    icns.write_bytes(b"icns" + struct.pack(">I", 8 + len(entry)) + entry)
    with pytest.raises(ImageError) as err:
        read_image(icns)
    assert err.value.reason == (
        f"claims 900,000,000 pixels (900 megapixels) in a {icns.stat().st_size}-byte file: "
        "refused as a decompression bomb"
    )
    assert "DecompressionBombError" not in str(err.value) and "DOS" not in str(err.value)


def test_raising_our_limit_raises_pillows(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)
    small = tmp_path / "small.png"
    Image.new("RGB", (8, 8)).save(small)
    read_image(small, max_pixels=400_000_000)
    assert 2 * Image.MAX_IMAGE_PIXELS >= 400_000_000  # Pillow would refuse before us


def test_a_truncated_png_is_worded_one_way(tmp_path: Path):
    rows = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rows).save(buffer, "PNG")
    whole = buffer.getvalue()
    reasons = []
    for keep in (len(whole) // 2, len(whole) - 20):  # inside IDAT, inside the IEND chunk
        cut = tmp_path / f"cut{keep}.png"
        cut.write_bytes(whole[:keep])
        with pytest.raises(ImageError) as err:
            read_image(cut)
        reasons.append(err.value.reason)
    assert all(r.startswith("truncated PNG file (") for r in reasons), reasons
