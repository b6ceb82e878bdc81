"""Which outputs to write, and writing them: shared by ``unetbg remove``,
``unetbg remove-dir``, the Celery chunk task and the web page.

Two halves:

* planning (pure file-system logic, no torch): :func:`plan_folder` maps a folder
  tree onto an output tree, :func:`plan_files` maps a few named files into one
  folder. Both return :class:`PlannedItem` rows, with a ``skip_reason`` for anything
  that will not be processed.
* processing: :func:`process_images` reads, predicts in batches, renders
  (:func:`render_output`) and writes each output atomically; a failing image becomes
  an error in its :class:`ItemResult`, never the end of the batch.

Output names
------------
The output of ``sub/a.jpg`` is ``sub/a.png`` (the suffix is replaced by the format's:
``.png``, ``.webp`` or ``.jpg``). When several inputs would get the same output name
(``a.jpg`` and ``a.png`` in one folder; names that differ only in case, which collide
on case-insensitive file systems), *every* member of the clash keeps its original
name and gains the new suffix: ``a.jpg.png`` and ``a.png.png``. The result depends only
on the input names, never on what already exists in the output folder, so rerunning
a job maps each input to the same output. In the rare case that such a name still
clashes (an input literally named ``a.jpg.png``, say), a ``~N`` counter is added
before the suffix, in sorted order of the input paths.
"""

from __future__ import annotations

import errno
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageColor

from unetbg.images import ImageError, read_image, save_image_atomic, to_rgb_array

#: Extensions that folder planning treats as images (compared case-insensitively).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
KINDS = ("cutout", "mask", "color", "background")
#: format -> (Pillow format name, file suffix, save parameters)
FORMATS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "png": ("PNG", ".png", {"compress_level": 6}),
    "webp": ("WEBP", ".webp", {"quality": 90, "method": 4}),
    "jpeg": ("JPEG", ".jpg", {"quality": 92}),
}
SKIP_EXISTS = "exists; use --overwrite"
SKIP_NOT_IMAGE = "not an image extension"


class PlanError(ValueError):
    """The request itself is wrong (folders overlap, output onto an input, …)."""


class OutputExistsError(FileExistsError):
    """Writing without ``overwrite`` found a file at the output (created after planning)."""


def normalize_format(name: str) -> str:
    """``"PNG"``/``"jpg"``/… -> ``"png"``/``"jpeg"``; unknown names raise ``ValueError``."""
    key = str(name).lower().lstrip(".")
    key = "jpeg" if key == "jpg" else key
    if key not in FORMATS:
        raise ValueError(f"unknown output format {name!r}; choose one of {', '.join(FORMATS)}")
    return key


def output_suffix(output_format: str) -> str:
    """The file suffix written for a format: ``.png``, ``.webp`` or ``.jpg``."""
    return FORMATS[normalize_format(output_format)][1]


def parse_color(value: str | Sequence[int]) -> tuple[int, int, int]:
    """``"#ffffff"``, ``"#fff"``, ``"white"``, ``"rgb(0,128,0)"`` or an RGB tuple -> RGB tuple."""
    if isinstance(value, str):
        try:
            rgb = ImageColor.getrgb(value.strip())
        except ValueError:
            raise ValueError(
                f"cannot parse colour {value!r}; use '#rrggbb', '#rgb' or a name like 'white'"
            ) from None
    else:
        rgb = tuple(value)
    if len(rgb) == 4 and rgb[3] == 255:
        rgb = rgb[:3]
    if len(rgb) != 3 or not all(isinstance(c, int | np.integer) and 0 <= c <= 255 for c in rgb):
        raise ValueError(f"colour must be three integers 0-255 (opaque), got {value!r}")
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]))


@dataclass(frozen=True)
class OutputOptions:
    """What to write for each image.

    ``kind``: ``cutout`` (RGBA, alpha = person probability, soft edges),
    ``mask`` (grayscale alpha), ``color`` (person composited on ``color``) or
    ``background`` (person composited on ``background``, an image path, PIL image or
    array, resized and centre-cropped to cover each photo). ``threshold`` makes the
    alpha hard (``probability >= threshold``). ``format``: ``png``, ``webp`` (both keep
    alpha) or ``jpeg`` (only for ``color``/``background``: JPEG has no alpha).
    """

    kind: str = "cutout"
    threshold: float | None = None
    color: tuple[int, int, int] | str = (255, 255, 255)
    background: Any = field(default=None, compare=False)
    format: str = "png"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        fmt = normalize_format(self.format)
        object.__setattr__(self, "format", fmt)
        if fmt == "jpeg" and self.kind not in ("color", "background"):
            raise ValueError(
                f"format jpeg cannot store kind {self.kind!r} (JPEG has no alpha channel and "
                "blurs mask edges); use png or webp, or kind color/background"
            )
        if self.threshold is not None:
            t = float(self.threshold)
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"threshold must be between 0 and 1, got {self.threshold!r}")
            object.__setattr__(self, "threshold", t)
        object.__setattr__(self, "color", parse_color(self.color))
        if self.kind == "background" and self.background is None:
            raise ValueError("kind 'background' needs a background image")
        if self.kind != "background" and self.background is not None:
            raise ValueError(f"a background image was given but kind is {self.kind!r}")

    @property
    def suffix(self) -> str:
        """The output file suffix for this format."""
        return FORMATS[self.format][1]


@dataclass(frozen=True)
class PlannedItem:
    """One input and where its output goes; ``skip_reason`` set means not processed.

    ``output_root`` is the output folder: writing re-checks that ``output`` is still
    inside it (a symlink created after planning cannot redirect the write).
    ``overwrite=False`` (how the planners set it unless asked to overwrite): a file that
    appears at ``output`` after planning is left alone and the item is skipped.
    """

    source: Path
    relative: Path
    output: Path | None
    skip_reason: str | None = None
    output_root: Path | None = None
    overwrite: bool = True

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None


@dataclass(frozen=True)
class ItemResult:
    """Outcome for one item: ``ok``, else ``error`` (a skip reason for skipped items)."""

    ok: bool
    error: str | None
    seconds: float
    source: Path | None = None
    output: Path | None = None
    skipped: bool = False


@dataclass
class BatchSummary:
    """What a folder run did; ``results`` align with ``items``."""

    items: list[PlannedItem]
    results: list[ItemResult]
    seconds: float

    @property
    def processed(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def failed(self) -> int:
        return sum(not r.ok and not r.skipped for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self.results)


class MaskPredictor(Protocol):
    """What :func:`process_images` needs from a model handle (``ModelInference`` is one)."""

    batch_size: int

    def predict_arrays(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """``H×W×3`` uint8 RGB arrays -> ``H×W`` float32 person probabilities."""
        ...


# --------------------------------------------------------------------------- planning


def _check_disjoint(input_root: Path, output_root: Path) -> None:
    if output_root == input_root:
        raise PlanError(f"output folder {output_root} is the input folder")
    if output_root.is_relative_to(input_root):
        raise PlanError(
            f"output folder {output_root} is inside the input folder {input_root}; "
            "its outputs would become inputs of the next run"
        )
    if input_root.is_relative_to(output_root):
        raise PlanError(f"input folder {input_root} is inside the output folder {output_root}")


def _output_root(output_dir: str | os.PathLike) -> Path:
    out = Path(output_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise PlanError(f"output path {out} exists and is not a folder")
    return out


def _key(path: PurePosixPath | Path) -> str:
    # Case-folded so outputs are distinct on case-insensitive file systems too.
    return Path(path).as_posix().casefold()


def unique_output_names(relatives: Sequence[Path], suffix: str) -> list[Path]:
    """Output relative paths for input relative paths (see the module docstring)."""
    names = [
        r.with_name(r.stem + suffix) if r.suffix else r.with_name(r.name + suffix)
        for r in relatives
    ]
    # A file output must not take the name of a folder that holds other outputs.
    folders = {_key(p) for r in relatives for p in r.parents if p != Path(".")}
    renamed = [False] * len(names)
    counters = [0] * len(names)
    while True:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(names):
            groups[_key(name)].append(i)
        clashes = [g for k, g in groups.items() if len(g) > 1 or k in folders]
        if not clashes:
            return names
        for group in clashes:
            fresh = [i for i in group if not renamed[i]]
            if fresh:
                for i in fresh:
                    names[i] = relatives[i].with_name(relatives[i].name + suffix)
                    renamed[i] = True
                continue
            # Every member already keeps its full name: number all but the first
            # (all of them when the clash is with a folder).
            order = sorted(group, key=lambda i: relatives[i].as_posix())
            start = 0 if _key(names[group[0]]) in folders else 1
            for rank, i in enumerate(order[start:], start=1):
                counters[i] += rank
                names[i] = relatives[i].with_name(f"{relatives[i].name}~{counters[i]}{suffix}")


def _finish(
    entries: list[tuple[Path, Path, str | None]],
    output_root: Path,
    suffix: str,
    overwrite: bool,
    forbidden_root: Path | None,
    input_files: set[Path] | None = None,
) -> list[PlannedItem]:
    todo = [i for i, (_, _, reason) in enumerate(entries) if reason is None]
    names = unique_output_names([entries[i][1] for i in todo], suffix)
    outputs = dict(zip(todo, names, strict=True))
    items = []
    for i, (source, relative, reason) in enumerate(entries):
        output = None
        if reason is None:
            output = output_root / outputs[i]
            reason = _output_problem(output, output_root, overwrite, forbidden_root, input_files)
        items.append(PlannedItem(source, relative, output, reason, output_root, overwrite))
    return items


def _output_problem(
    output: Path,
    output_root: Path,
    overwrite: bool,
    forbidden_root: Path | None,
    input_files: set[Path] | None = None,
) -> str | None:
    real = output.resolve()
    if not real.is_relative_to(output_root):
        return f"output would be written outside the output folder (to {real})"
    if forbidden_root is not None and real.is_relative_to(forbidden_root):
        return f"output would be written inside the input folder (to {real})"
    if input_files is not None and real in input_files:
        return "output would overwrite an input"
    if os.path.lexists(output):
        if output.is_dir():
            return "output path is an existing folder"
        if not overwrite:
            return SKIP_EXISTS
    return None


def plan_folder(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    output_format: str = "png",
    follow_symlinks: bool = False,
    overwrite: bool = False,
) -> list[PlannedItem]:
    """Plan the outputs for every image under ``input_dir`` (recursively).

    Sub-folders are mirrored under ``output_dir``; output names follow the module
    docstring. Hidden files and folders (``.name``) are ignored. Skipped, with a
    reason: files whose extension is not in :data:`IMAGE_EXTENSIONS`, existing outputs
    (unless ``overwrite``), broken symlinks, symlink loops, and — unless
    ``follow_symlinks`` — symlinks pointing outside ``input_dir`` and symlinked
    folders. Raises :class:`PlanError` when ``input_dir`` is not a folder or the two
    folders overlap. Nothing is created or written.
    """
    suffix = output_suffix(output_format)
    src = Path(input_dir).expanduser()
    if not src.is_dir():
        raise PlanError(f"input folder {src} does not exist or is not a folder")
    input_root = src.resolve()
    output_root = _output_root(output_dir)
    _check_disjoint(input_root, output_root)

    entries: list[tuple[Path, Path, str | None]] = []

    def walk(folder: Path, rel: Path, chain: tuple[Path, ...]) -> None:
        real = chain[-1]
        try:
            with os.scandir(folder) as it:
                listing = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            entries.append((folder, rel, f"cannot list folder: {exc.strerror or exc}"))
            return
        for entry in listing:
            if entry.name.startswith("."):
                continue
            path, relative = Path(entry.path), rel / entry.name
            target = real / entry.name
            if entry.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except FileNotFoundError:
                    entries.append((path, relative, "broken symlink"))
                    continue
                except (RuntimeError, OSError):  # ELOOP (RuntimeError before 3.13)
                    entries.append((path, relative, "symlink loop"))
                    continue
                inside = target.is_relative_to(input_root)
                if target.is_relative_to(output_root) or (
                    target.is_dir() and output_root.is_relative_to(target)
                ):
                    # Outputs must never be read back as inputs.
                    entries.append((path, relative, "symlink points into the output folder"))
                    continue
                if target.is_dir():
                    # Following a link to a folder that holds one we are walking
                    # (through any number of links) would never end.
                    if any(c.is_relative_to(target) for c in chain):
                        entries.append((path, relative, "symlink loop"))
                        continue
                    if not follow_symlinks:
                        reason = (
                            "symlinked folder inside the input folder (its images are planned there)"
                            if inside
                            else "symlink points outside the input folder; use --follow-symlinks"
                        )
                        entries.append((path, relative, reason))
                        continue
                    walk(path, relative, (*chain, target))
                    continue
                if not inside and not follow_symlinks:
                    entries.append(
                        (
                            path,
                            relative,
                            "symlink points outside the input folder; use --follow-symlinks",
                        )
                    )
                    continue
            elif entry.is_dir(follow_symlinks=False):
                walk(path, relative, (*chain, target))
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                entries.append((path, relative, SKIP_NOT_IMAGE))
            elif not (
                target.is_file() if entry.is_symlink() else entry.is_file(follow_symlinks=False)
            ):
                entries.append((path, relative, "not a regular file"))
            else:
                entries.append((path, relative, None))

    walk(src, Path(), (input_root,))
    return _finish(entries, output_root, suffix, overwrite, input_root)


def plan_files(
    sources: Iterable[str | os.PathLike],
    output_dir: str | os.PathLike,
    output_format: str = "png",
    overwrite: bool = False,
) -> list[PlannedItem]:
    """Plan outputs for individually named files, all written into ``output_dir``.

    Names follow the module docstring (``x/a.jpg`` and ``y/a.jpg`` become ``a.jpg.png``
    and ``a.jpg~1.png``). The extension is not checked: a named file is read by its
    content. Raises :class:`PlanError` if an output would replace one of the inputs, or
    if ``output_dir`` is (or is above) the folder of an input: that folder holds the
    user's other photos, which an output could replace (``a.jpg`` -> ``a.png``). A
    folder below an input's folder is fine.
    """
    suffix = output_suffix(output_format)
    output_root = _output_root(output_dir)
    paths = [Path(s).expanduser() for s in sources]
    inputs = {p.resolve() for p in paths}
    entries: list[tuple[Path, Path, str | None]] = [(p, Path(p.name), None) for p in paths]
    items = _finish(entries, output_root, suffix, overwrite, None, inputs)
    onto = [it for it in items if it.skip_reason == "output would overwrite an input"]
    if onto:
        raise PlanError(
            f"refusing to write {onto[0].output} over its input; choose another output folder"
            + (f" ({len(onto)} inputs affected)" if len(onto) > 1 else "")
        )
    for path in paths:
        # The folder the name is in and, for a symlink, the folder of the real file.
        folders = {path.absolute().parent.resolve(), path.resolve().parent}
        if any(folder.is_relative_to(output_root) for folder in folders):
            raise PlanError(
                f"output folder {output_root} holds the input {path}; its other files could "
                "be replaced by outputs: choose a folder outside the inputs' folders "
                "(a new sub-folder is fine)"
            )
    return items


# ------------------------------------------------------------------------- rendering


def _cover(background: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to cover ``width×height`` keeping the aspect ratio, then centre-crop."""
    bh, bw = background.shape[:2]
    scale = max(width / bw, height / bh)
    new_w, new_h = max(width, round(bw * scale)), max(height, round(bh * scale))
    resized = Image.fromarray(background).resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return np.asarray(resized.crop((left, top, left + width, top + height)))


def render_output(
    rgb: np.ndarray,
    probability: np.ndarray,
    options: OutputOptions,
    background: np.ndarray | None = None,
) -> Image.Image:
    """Turn an ``H×W×3`` uint8 image and its ``H×W`` probability into the output image.

    The result always has the input's width and height. ``background`` is the
    already-read background array for kind ``background`` (any size).
    """
    height, width = rgb.shape[:2]
    if probability.shape != (height, width):
        raise ValueError(f"probability shape {probability.shape} != image shape {(height, width)}")
    alpha = np.clip(probability.astype(np.float32), 0.0, 1.0)
    if options.threshold is not None:
        alpha = (alpha >= options.threshold).astype(np.float32)
    alpha8 = np.rint(alpha * 255.0).astype(np.uint8)
    if options.kind == "mask":
        return Image.fromarray(alpha8, "L")
    if options.kind == "cutout":
        return Image.fromarray(np.dstack([rgb, alpha8]), "RGBA")
    if options.kind == "color":
        back = np.broadcast_to(np.asarray(options.color, dtype=np.float32), rgb.shape)
    else:
        if background is None:
            raise ValueError("kind 'background' needs the background array")
        back = _cover(background, width, height).astype(np.float32)
    a = alpha[:, :, None]
    out = rgb.astype(np.float32) * a + back * (1.0 - a)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def save_params(options: OutputOptions) -> tuple[str, dict[str, Any]]:
    """Pillow format name and save parameters for ``options``."""
    pil_format, _, params = FORMATS[options.format]
    params = dict(params)
    if options.format == "webp" and options.kind == "mask":
        params = {"lossless": True}  # lossy WebP would smear the mask's edges
    return pil_format, params


def load_background(options: OutputOptions) -> np.ndarray | None:
    """Read ``options.background`` once (path, PIL image or array); ``None`` if unused."""
    bg = options.background
    if bg is None:
        return None
    if isinstance(bg, str | os.PathLike):
        return read_image(bg)
    return to_rgb_array(bg)


# ------------------------------------------------------------------------ processing


def _check_output(item: PlannedItem) -> Path:
    output = item.output
    if output is None:
        raise ValueError(f"{item.source} has no planned output")
    if item.output_root is not None:
        root = item.output_root.resolve()
        if not output.resolve().is_relative_to(root):
            raise PlanError(f"refusing to write outside the output folder {root}")
    if output.resolve() == Path(item.source).resolve():
        raise PlanError("refusing to overwrite the input")
    return output


def write_output(item: PlannedItem, image: Image.Image, options: OutputOptions) -> Path:
    """Write one rendered output atomically, creating its folder; re-checks that the
    output stays inside ``item.output_root`` and is not the input. Without
    ``item.overwrite`` an existing output raises :class:`OutputExistsError`."""
    output = _check_output(item)
    output.parent.mkdir(parents=True, exist_ok=True)
    output = _check_output(item)  # mkdir may not follow a link created meanwhile
    pil_format, params = save_params(options)
    try:
        return save_image_atomic(image, output, pil_format, overwrite=item.overwrite, **params)
    except FileExistsError as exc:
        raise OutputExistsError(errno.EEXIST, SKIP_EXISTS, str(output)) from exc


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ImageError):
        return exc.reason
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"


def process_images(
    model_handle: MaskPredictor,
    items: Sequence[PlannedItem],
    options: OutputOptions,
    on_result: Callable[[PlannedItem, ItemResult], None] | None = None,
    max_pixels: int | None = None,
) -> list[ItemResult]:
    """Read, predict (in batches of ``model_handle.batch_size``), render and write.

    Returns one :class:`ItemResult` per item, in order. Skipped items come back as
    ``skipped`` with their reason; unreadable images, failed predictions and failed
    writes become per-item errors and never stop the batch. ``on_result(item,
    result)`` is called as each item finishes (progress, printing; skipped items
    first). A bad ``options.background``, or items planned for another format than
    ``options.format``, raise before anything is processed.
    """
    wrong = [it for it in items if it.output is not None and it.output.suffix != options.suffix]
    if wrong:
        raise ValueError(
            f"{wrong[0].output} was planned for another format than {options.format}; "
            "plan with the same output format"
        )
    background = load_background(options)
    results: list[ItemResult | None] = [None] * len(items)

    def finish(index: int, result: ItemResult) -> None:
        results[index] = result
        if on_result is not None:
            on_result(items[index], result)

    todo = []
    for index, item in enumerate(items):
        if item.skip_reason is not None:
            finish(index, ItemResult(False, item.skip_reason, 0.0, item.source, item.output, True))
        else:
            todo.append(index)

    batch_size = max(1, int(getattr(model_handle, "batch_size", 8)))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        loaded: list[tuple[int, np.ndarray, float]] = []
        for index in chunk:
            item = items[index]
            t0 = time.perf_counter()
            try:
                loaded.append(
                    (index, read_image(item.source, max_pixels), time.perf_counter() - t0)
                )
            except Exception as exc:
                finish(index, _failure(item, exc, time.perf_counter() - t0))
        if not loaded:
            continue
        t0 = time.perf_counter()
        try:
            probs: list[np.ndarray | BaseException] = list(
                model_handle.predict_arrays([arr for _, arr, _ in loaded])
            )
            share = (time.perf_counter() - t0) / len(loaded)
        except Exception:
            # Find the culprit: one image at a time, so only it fails.
            probs = []
            for _, arr, _ in loaded:
                try:
                    probs.append(model_handle.predict_arrays([arr])[0])
                except Exception as exc:
                    probs.append(exc)
            share = (time.perf_counter() - t0) / len(loaded)
        for (index, rgb, read_s), prob in zip(loaded, probs, strict=True):
            item = items[index]
            t1 = time.perf_counter()
            if isinstance(prob, BaseException):
                finish(index, _failure(item, prob, read_s + share, "prediction failed: "))
                continue
            try:
                write_output(item, render_output(rgb, prob, options, background), options)
            except OutputExistsError:
                # Appeared after planning (another run, the user): theirs, not replaced.
                spent = read_s + share + time.perf_counter() - t1
                finish(index, ItemResult(False, SKIP_EXISTS, spent, item.source, item.output, True))
                continue
            except Exception as exc:
                spent = read_s + share + time.perf_counter() - t1
                finish(index, _failure(item, exc, spent, "cannot write output: "))
                continue
            spent = read_s + share + time.perf_counter() - t1
            finish(index, ItemResult(True, None, spent, item.source, item.output))
    return [r for r in results if r is not None]


def _failure(item: PlannedItem, exc: BaseException, seconds: float, prefix: str = "") -> ItemResult:
    return ItemResult(False, prefix + _error_text(exc), seconds, item.source, item.output)
