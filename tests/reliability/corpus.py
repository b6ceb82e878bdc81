"""A generated folder of good and bad inputs for ``remove-dir``, each case with its
expected outcome.

Every file is real: JPEGs and PNGs written by Pillow (or byte by byte where Pillow
cannot write the damage), symlinks made with ``os.symlink``. Good images carry the
size their output must have (after EXIF orientation); bad files carry the item state
(``failed`` or ``skipped``) and a piece of the reason that must be shown for them.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from inference_fixtures import person_photo

#: Worker setting used with this corpus: the panorama (1,000,000 px) still passes.
MAX_PIXELS = 1_000_000


@dataclass(frozen=True)
class Case:
    """One entry of the input folder."""

    relative: str
    what: str
    #: Output (width, height) for a good image; ``None`` for a bad file.
    size: tuple[int, int] | None = None
    #: ``failed`` or ``skipped`` for a bad file.
    state: str | None = None
    #: A piece of the reason ``unetbg status`` must show for a bad file.
    reason: str | None = None

    @property
    def good(self) -> bool:
        return self.size is not None


@dataclass
class Corpus:
    input: Path
    outside: Path
    cases: list[Case] = field(default_factory=list)

    @property
    def good(self) -> list[Case]:
        return [c for c in self.cases if c.good]

    @property
    def bad(self) -> list[Case]:
        return [c for c in self.cases if not c.good]

    def path(self, case: Case) -> Path:
        return self.input / case.relative


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_16bit_rgb(width: int, height: int) -> bytes:
    """A 16-bit RGB PNG written byte by byte (Pillow cannot write one)."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 1000, y * 1500, (x + y) * 500], axis=2).astype(">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def build(root: Path) -> Corpus:
    """Write the corpus under ``root/input`` (and a target outside it, ``root/outside``)."""
    corpus = Corpus(root / "input", root / "outside")
    inp, outside = corpus.input, corpus.outside
    inp.mkdir(parents=True)
    outside.mkdir(parents=True)
    photo = person_photo(64, 48)

    def good(relative: str, what: str, size: tuple[int, int]) -> Path:
        corpus.cases.append(Case(relative, what, size=size))
        path = inp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def bad(relative: str, what: str, state: str, reason: str) -> Path:
        corpus.cases.append(Case(relative, what, state=state, reason=reason))
        path = inp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    Image.fromarray(photo).save(good("plain.jpg", "RGB JPEG", (64, 48)), quality=90)
    Image.fromarray(photo).save(good("png-named.jpg", "PNG named .jpg", (64, 48)), format="PNG")
    Image.fromarray(photo[:1, :1]).save(good("one-pixel.png", "1×1 image", (1, 1)))
    Image.fromarray(person_photo(10_000, 100)).save(
        good("panorama.jpg", "10000×100 panorama", (10_000, 100)), quality=80
    )
    cmyk = Image.fromarray(photo).convert("CMYK")
    cmyk.save(good("cmyk.jpg", "CMYK JPEG", (64, 48)), quality=90)
    good("rgb16.png", "16-bit RGB PNG", (40, 30)).write_bytes(_png_16bit_rgb(40, 30))
    gray16 = (photo[:, :, 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(good("gray16.png", "16-bit grayscale PNG", (64, 48)))
    Image.fromarray(photo).convert("L").save(good("gray.jpg", "grayscale JPEG", (64, 48)))
    palette = Image.fromarray(photo).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(good("palette.png", "palette PNG with transparency", (64, 48)), transparency=0)
    frames = [Image.fromarray(photo), Image.fromarray(255 - photo)]
    frames[0].save(
        good("animated.gif", "animated GIF (first frame)", (64, 48)),
        save_all=True,
        append_images=frames[1:],
        duration=80,
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated a quarter turn: portrait
    Image.fromarray(photo).save(
        good("exif-rotated.jpg", "EXIF orientation 6", (48, 64)), exif=exif, quality=90
    )
    for name, what in (
        ("with space.jpg", "name with spaces"),
        ("ünïcødé 写真.jpg", "unicode name"),
        ("-leading-dash.jpg", "name starting with a dash"),
        ("--help.jpg", "name that looks like an option"),
    ):
        Image.fromarray(photo).save(good(name, what, (64, 48)), quality=90)
    Image.fromarray(photo).save(good("clash/a.jpg", "a.jpg beside a.png", (64, 48)), quality=90)
    Image.fromarray(photo[:40, :50]).save(good("clash/a.png", "a.png beside a.jpg", (50, 40)))
    Image.fromarray(photo).save(good("deep/er/nested.jpg", "nested folders", (64, 48)))

    locked = inp / "locked.jpg"
    Image.fromarray(photo).save(locked, quality=90)
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root (CAP_DAC_OVERRIDE) reads it anyway
        corpus.cases.append(Case("locked.jpg", "chmod 000 (readable: running as root)", (64, 48)))
    else:
        corpus.cases.append(Case("locked.jpg", "chmod 000", None, "failed", "permission denied"))

    bad("empty.jpg", "zero-byte file", "failed", "empty file (0 bytes)").write_bytes(b"")
    Image.fromarray(photo).save(inp / "full.tmp", format="JPEG", quality=90)
    data = (inp / "full.tmp").read_bytes()
    (inp / "full.tmp").unlink()
    bad("truncated.jpg", "truncated JPEG", "failed", "truncated JPEG").write_bytes(
        data[: len(data) * 2 // 3]
    )
    Image.fromarray(photo).save(inp / "ok.tmp", format="PNG")
    png = bytearray((inp / "ok.tmp").read_bytes())
    (inp / "ok.tmp").unlink()
    png[png.index(b"IDAT") + 30] ^= 0xFF  # damages the data; its CRC no longer matches
    bad("corrupt-chunk.png", "PNG with a corrupt chunk", "failed", "corrupt PNG").write_bytes(png)
    bad("notes.jpg", "text file named .jpg", "failed", "not a recognised image format").write_text(
        "these are my notes, not a photo\n" * 4
    )
    Image.new("RGB", (1100, 1000), (90, 120, 150)).save(
        bad("huge.png", "image above the pixel limit", "failed", "too many pixels: 1100×1000")
    )
    Image.fromarray(photo).save(outside / "secret.jpg", quality=90)
    bad(
        "outside-link.jpg", "symlink to a file outside INPUT", "skipped", "points outside"
    ).symlink_to(outside / "secret.jpg")
    bad("outside-dir", "symlink to a folder outside INPUT", "skipped", "points outside").symlink_to(
        outside, target_is_directory=True
    )
    bad("self-loop.jpg", "symlink to itself", "skipped", "symlink loop").symlink_to("self-loop.jpg")
    bad("deep/up", "symlinked folder looping to its parent", "skipped", "symlink loop").symlink_to(
        "..", target_is_directory=True
    )
    bad("dangling.jpg", "broken symlink", "skipped", "broken symlink").symlink_to("gone.jpg")
    bad("readme.txt", "text file", "skipped", "not an image extension").write_text("hello\n")
    bad("deep/data.csv", "CSV file", "skipped", "not an image extension").write_text("a,b\n1,2\n")
    bad("Makefile", "file without extension", "skipped", "not an image extension").write_text("")
    return corpus


def tree_digest(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (links not followed): content hash, link target or
    ``dir``, with permission bits, so any change to the inputs shows."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            st = path.lstat()
            mode = f"{st.st_mode & 0o7777:o}"
            if path.is_symlink():
                out[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                out[rel] = f"dir:{mode}"
            else:
                with open(path, "rb") as fh:  # root reads the chmod-000 file too
                    out[rel] = f"{hashlib.sha256(fh.read()).hexdigest()}:{mode}:{st.st_mtime_ns}"
    return out
