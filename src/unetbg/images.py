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

import ctypes
import logging
import os
import platform
import re
import sys
import threading
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

    #: The reason without its bracketed detail, when the detail is the decoder's.
    detail: str | None = None

    def __init__(self, reason: str, path: str | os.PathLike | None = None):
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(reason if path is None else f"{path}: {reason}")


# ---------------------------------------------------------------------------------------
# What the decoders say about one image
#
# libtiff reports through process-wide handlers that print to stderr ("tempfile.tif:
# Fax4Decode: Bad code word"), and Pillow warns through `warnings`; neither names the
# file. Both are caught here, per thread, while one image is read: a failed image gets
# the decoder's own words in its reason, a good one logs them (INFO) with its name, and
# stderr stays quiet.

_decoding = threading.local()
_hooks_lock = threading.Lock()
_hooks: list = []  # the installed ctypes callbacks, kept alive for the process


def _note(text: str) -> bool:
    """Record ``text`` for the image this thread is reading; False when none is."""
    messages = getattr(_decoding, "messages", None)
    if messages is None:
        return False
    text = text.strip().rstrip(".")
    if text and text not in messages:
        messages.append(text)
    return True


def _route_pillow_warnings() -> None:
    """Pillow's warnings go to :func:`_note` while an image is read (else as before).
    Done at import, so that ``warnings.catch_warnings`` blocks entered later keep it."""
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not ("PIL" in Path(filename).parts and _note(str(message))):
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    # Each image's warnings, not only the first of a kind; our pixel limit is the guard,
    # so Pillow's bomb warning is noise.
    warnings.filterwarnings("always", module=r"PIL\.")
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


_route_pillow_warnings()


def _install_hooks() -> None:
    """Route libtiff's messages to :func:`_note` (once, on the first image read)."""
    with _hooks_lock:
        if not _hooks:
            _hooks.append(None)  # tried (libtiff's handlers may not be installable)
            _install_libtiff_handlers()


def _install_libtiff_handlers() -> None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        return  # va_list is passed as a pointer there; elsewhere libtiff keeps stderr
    from PIL import _imaging  # noqa: F401  (loads the libtiff Pillow uses)

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libtiff" in line.rsplit("/", 1)[-1]}
        (path,) = paths or (None,)
        if path is None:
            return
        libtiff, libc = ctypes.CDLL(path), ctypes.CDLL(None)
    except (OSError, ValueError):
        return
    vsnprintf = libc.vsnprintf
    vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
    handler_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)

    def handler(module, fmt, args) -> None:
        text = ctypes.create_string_buffer(1024)
        vsnprintf(text, len(text), fmt, args)
        message = text.value.decode(errors="replace")
        if not _note(message):
            log.warning("libtiff: %s", message)

    callback = handler_type(handler)
    for name in ("TIFFSetErrorHandler", "TIFFSetWarningHandler"):
        setter = getattr(libtiff, name)
        setter.argtypes, setter.restype = [handler_type], ctypes.c_void_p
        setter(callback)
    _hooks.append(callback)


class _Messages:
    """``with _Messages() as said:`` collects what the decoders say in this thread."""

    def __enter__(self) -> list[str]:
        _install_hooks()
        self.outer = getattr(_decoding, "messages", None)
        _decoding.messages = []
        return _decoding.messages

    def __exit__(self, *exc) -> None:
        _decoding.messages = self.outer


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
    with _Messages() as said:
        try:
            image = _decode(fh, limit, path, said)
        except ImageError as exc:
            if said and exc.detail is not None:  # the decoder's words, not its error code
                raise ImageError(f"{exc.detail} ({'; '.join(said[:3])})", path) from None
            raise
    if said:
        log.info("%s: decoded with warnings: %s", path or "image", "; ".join(said))
    return image


def _decode(fh: BinaryIO, limit: int, path: Path | None, said: list[str]) -> np.ndarray:
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
                raise _decode_error(exc, kind, path) from None
        fh.seek(0)
    with _open(fh, limit, kind, path) as im:
        try:
            # Decode now: a truncated or corrupt file fails here, not half-decoded.
            im.load()
        except Image.DecompressionBombError as exc:  # sizes known only now (ICNS)
            raise _too_many(exc, limit, fh, path) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
            raise _decode_error(exc, im.format or kind, path) from None
        try:
            return to_rgb_array(im)
        except ImageError as exc:
            raise ImageError(exc.reason, path) from None


def _open(fh: BinaryIO, limit: int, kind: str | None, path: Path | None) -> Image.Image:
    # Pillow refuses on its own above 2 × Image.MAX_IMAGE_PIXELS: never below our limit,
    # so that raising UNETBG_MAX_IMAGE_PIXELS is all it takes to allow larger images.
    if Image.MAX_IMAGE_PIXELS is not None and limit > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit // 2 + 1
    try:
        im = Image.open(fh)
    except Image.DecompressionBombError as exc:
        raise _too_many(exc, limit, fh, path) from None
    except UnidentifiedImageError:
        if kind is None:
            raise ImageError("not a recognised image format", path) from None
        raise ImageError(f"corrupt {kind} (header cannot be parsed)", path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _decode_error(exc, kind, path) from None
    width, height = im.size
    if width * height > limit:
        bomb = _is_bomb(fh, width * height)  # before close(), which closes fh
        im.close()
        if bomb:
            raise ImageError(_bomb_text(f"{width}×{height}", width * height, bomb), path)
        size = f"{width}×{height} = {width * height:,}"
        raise ImageError(_too_many_text(size, width * height, limit), path)
    if width == 0 or height == 0:
        im.close()
        raise ImageError(f"image has no pixels ({width}×{height})", path)
    return im


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _too_many_text(size: str, pixels: int | None, limit: int) -> str:
    allow = f"UNETBG_MAX_IMAGE_PIXELS={pixels}" if pixels else "a larger UNETBG_MAX_IMAGE_PIXELS"
    return (
        f"too many pixels: {size} exceeds the limit of {limit:,} (decompression-bomb "
        f"guard, UNETBG_MAX_IMAGE_PIXELS; to allow this image set {allow})"
    )


#: No real image holds fewer bytes than this per claimed pixel: even a flat 1-bit PNG
#: needs about 1/8000 byte (deflate compresses at most ~1000:1).
_BOMB_BYTES_PER_PIXEL = 1 / 10_000


def _byte_size(fh: BinaryIO) -> int | None:
    """The file's size, or None for a stream that cannot tell it."""
    try:
        where = fh.tell()
        size = fh.seek(0, os.SEEK_END)
        fh.seek(where)
    except (OSError, ValueError, AttributeError):
        return None
    return size


def _is_bomb(fh: BinaryIO, pixels: int) -> int | None:
    """The file's byte size when its header claims far more pixels than those bytes could
    hold (no photo to allow by raising the limit, so the message must not suggest it);
    else None."""
    size = _byte_size(fh)
    return size if size is not None and size < pixels * _BOMB_BYTES_PER_PIXEL else None


def _bomb_text(dims: str, pixels: int, size: int) -> str:
    scale = (1e9, "gigapixels") if pixels >= 1e9 else (1e6, "megapixels")
    amount = f"{pixels / scale[0]:.3g} {scale[1]}"
    return (
        f"claims {dims} pixels ({amount}) in a {size:,}-byte file: refused as a decompression bomb"
    )


def _claimed_dims(fh: BinaryIO, pixels: int) -> str | None:
    """``W×H`` as the header claims it. Image.open refuses a bomb before telling its size,
    so ask the format's own parser, which does not check it; None if none parses it or
    its size is not the refused one (an ICNS's nominal size, say)."""
    fh.seek(0)
    prefix = fh.read(16)
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        if accept is not None and not accept(prefix):
            continue
        fh.seek(0)
        try:
            width, height = factory(fh).size
        except Exception:  # noqa: BLE001 - not this format: try the next, as Image.open does
            continue
        return f"{width}×{height}" if width * height == pixels else None
    return None


def _too_many(
    exc: Image.DecompressionBombError, limit: int, fh: BinaryIO, path: Path | None
) -> ImageError:
    """Pillow's own refusal, in our words and with our limit (its text cites its own)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(found[1]) if found else None
    size = _is_bomb(fh, pixels) if pixels else None
    if pixels and size is not None:
        dims = _claimed_dims(fh, pixels)
        return ImageError(_bomb_text(dims or f"{pixels:,}", pixels, size), path)
    return ImageError(_too_many_text(f"{pixels:,}" if pixels else "it", pixels, limit), path)


def _decode_error(exc: BaseException, fmt: str | None, path: Path | None) -> ImageError:
    """A decoder's failure as one wording per cause: ``truncated PNG file`` wherever the
    data ends early (Pillow says "Truncated File Read", "image file is truncated", …),
    else ``corrupt PNG data``; the detail in brackets. ``detail`` keeps the first part,
    for :func:`_read_stream` to put the decoder's own messages in the brackets."""
    text, name = str(exc), fmt or "image"
    truncated = "truncated" in text.lower() or isinstance(exc, EOFError)
    detail = f"truncated {name} file" if truncated else f"corrupt {name} data"
    error = ImageError(f"{detail} ({_short(exc)})", path)
    error.detail = detail
    return error


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
