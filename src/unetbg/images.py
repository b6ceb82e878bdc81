"""Robust image reading and atomic image writing.

Everything that turns a file (or an in-memory image) into the ``H×W×3`` uint8 RGB
array the model sees goes through :func:`read_image` / :func:`to_rgb_array`, so the
CLI, the Celery tasks, the web page and the COCO dataset treat odd files the same
way: EXIF orientation applied, grayscale / palette / CMYK / 16-bit / animated inputs
converted, and anything unreadable reported as an :class:`ImageError` with a short,
specific reason instead of a half-decoded image.

Files are identified by their content, never by their extension (a PNG named
``.jpg`` reads fine). Inputs are opened read-only and never modified.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from unetbg.durable import atomic_file

log = logging.getLogger(__name__)

# Byte signatures used only to word error messages ("corrupt PNG" rather than
# "not an image"); Pillow itself decides what the file is.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"RIFF", "WEBP"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class ImageError(ValueError):
    """An image could not be read; ``reason`` is a short, specific explanation."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None):
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(reason if path is None else f"{path}: {reason}")


def default_max_pixels() -> int:
    """The decompression-bomb limit from ``UNETBG_MAX_IMAGE_PIXELS`` (see settings)."""
    from unetbg.settings import get_settings

    return get_settings().max_image_pixels


def read_image(source: str | os.PathLike | BinaryIO, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as an ``H×W×3`` uint8 RGB array.

    ``source`` is a path or a binary file object (an upload, say). EXIF orientation
    is applied; grayscale, palette, RGBA (alpha dropped: the model predicts it), CMYK,
    16-bit and animated (first frame) images are converted. ``max_pixels`` (default:
    ``Settings.max_image_pixels``) refuses images with more pixels before they are
    decoded. Raises :class:`ImageError` for anything unreadable: missing, empty,
    unreadable (permissions), not an image, truncated, corrupt or too large.
    """
    limit = default_max_pixels() if max_pixels is None else int(max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            with open(path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size == 0:
                    raise ImageError("empty file (0 bytes)", path)
                return _read_stream(fh, limit, path)
        except ImageError:
            raise
        except FileNotFoundError:
            raise ImageError("file not found", path) from None
        except IsADirectoryError:
            raise ImageError("is a folder, not a file", path) from None
        except PermissionError:
            raise ImageError("permission denied", path) from None
        except OSError as exc:
            raise ImageError(f"cannot read file: {exc.strerror or exc}", path) from None
    return _read_stream(source, limit, None)


def _read_stream(fh: BinaryIO, limit: int, path: Path | None) -> np.ndarray:
    head = fh.read(16)
    if not head:
        raise ImageError("empty file (0 bytes)", path)
    kind = next((name for sig, name in _SIGNATURES if head.startswith(sig)), None)
    fh.seek(0)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # With it set, Pillow pads missing data with grey and "succeeds".
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    if kind == "PNG":
        # Pillow does not check the CRC of IDAT chunks while decoding, so a damaged
        # chunk can decode into wrong pixels. verify() checks every chunk's CRC (it
        # reads, but does not decode; the pixel limit is checked first by _open).
        with _open(fh, limit, kind, path) as im:
            try:
                im.verify()
            except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
                raise ImageError(f"corrupt PNG ({_short(exc)})", path) from None
        fh.seek(0)
    with _open(fh, limit, kind, path) as im:
        try:
            # Decode now: a truncated or corrupt file fails here, not half-decoded.
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
            raise ImageError(_decode_reason(exc, im.format or kind), path) from None
        try:
            return to_rgb_array(im)
        except ImageError as exc:
            raise ImageError(exc.reason, path) from None


def _open(fh: BinaryIO, limit: int, kind: str | None, path: Path | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Our own limit below is the guard; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fh)
    except Image.DecompressionBombError as exc:
        # Pillow refuses on its own above 2 × Image.MAX_IMAGE_PIXELS.
        raise ImageError(f"too many pixels: {exc}", path) from None
    except UnidentifiedImageError:
        if kind is None:
            raise ImageError("not a recognised image format", path) from None
        raise ImageError(f"corrupt {kind} (header cannot be parsed)", path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(_decode_reason(exc, kind), path) from None
    width, height = im.size
    if width * height > limit:
        im.close()
        raise ImageError(
            f"too many pixels: {width}×{height} = {width * height:,} exceeds the limit of "
            f"{limit:,} (decompression-bomb guard; raise UNETBG_MAX_IMAGE_PIXELS to allow)",
            path,
        )
    if width == 0 or height == 0:
        im.close()
        raise ImageError(f"image has no pixels ({width}×{height})", path)
    return im


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _decode_reason(exc: BaseException, fmt: str | None) -> str:
    text = str(exc)
    name = fmt or "image"
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return f"truncated {name} file ({_short(exc)})"
    return f"corrupt {name} data ({_short(exc)})"


def to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """Convert a PIL image or an array to a contiguous ``H×W×3`` uint8 RGB array.

    PIL images get the same treatment as files in :func:`read_image` (EXIF
    orientation, mode conversion; the current frame of an animation). Arrays must be
    uint8 ``H×W`` (gray), ``H×W×3`` (RGB) or ``H×W×4`` (RGBA, alpha dropped).
    """
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    try:
        im = ImageOps.exif_transpose(image)
    except Exception as exc:  # malformed EXIF should not make a good photo unreadable
        log.warning("ignoring unreadable EXIF orientation: %s", exc)
        im = image
    return np.ascontiguousarray(np.asarray(_to_rgb_image(im), dtype=np.uint8))


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise ImageError(f"array images must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, :3]
    else:
        raise ImageError(f"array images must be H×W, H×W×3 or H×W×4, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"image has no pixels (shape {arr.shape})")
    return np.ascontiguousarray(arr)


def _to_rgb_image(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode == "I":
        return _wide_gray_to_rgb(im)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        # Float images come either normalised to [0, 1] or on the 8-bit scale.
        scale = 255.0 if np.nanmax(arr) <= 1.0 else 1.0
        gray = np.clip(np.nan_to_num(arr) * scale, 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode in ("P", "PA"):
        # Via RGBA so palette transparency is interpreted (and Pillow does not warn).
        return im.convert("RGBA").convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"unsupported colour mode {mode} ({_short(exc)})") from None


def _wide_gray_to_rgb(im: Image.Image) -> Image.Image:
    arr = np.asarray(im)
    if im.mode.startswith("I;16"):
        top = 65535.0
    else:
        # 32-bit "I": 16-bit PNG/TIFF data widened by Pillow almost always fits 16 bits;
        # anything larger is taken as full-range 32-bit.
        arr = np.clip(arr.astype(np.int64), 0, None)
        top = 65535.0 if arr.max(initial=0) <= 65535 else float(2**31 - 1)
    # Scale (not clip) to 8 bits: 65535 -> 255, 32768 -> 128.
    gray = np.rint(arr.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    return Image.fromarray(gray, "L").convert("RGB")


def write_atomic(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder,
    fsync, ``os.replace``). Readers see the old file or the new one, never a part.
    With ``overwrite=False`` an existing ``path`` raises ``FileExistsError`` and is
    left alone, even one that appears while the data is being written."""
    path = Path(path)
    with atomic_file(path, overwrite) as fh:
        fh.write(data)
    return path


def save_image_atomic(
    image: Image.Image, path: str | os.PathLike, format: str, *, overwrite: bool = True, **params
) -> Path:
    """Encode ``image`` as ``format`` (``"PNG"``, ``"WEBP"``, ``"JPEG"``…) into
    ``path`` atomically. ``params`` go to :meth:`PIL.Image.Image.save`. On any
    failure the temporary file is removed and an existing ``path`` is untouched.
    ``overwrite=False``: as for :func:`write_atomic`."""
    path = Path(path)
    with atomic_file(path, overwrite) as fh:
        image.save(fh, format=format, **params)
    return path
