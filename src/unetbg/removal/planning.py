"""Planning: which output each input gets, without touching any file.

:func:`plan_folder` maps a folder tree onto an output tree, :func:`plan_files` maps a
few named files into one folder, and :func:`plan_in_folder` plans a few files of a
folder tree as :func:`plan_folder` would, without walking the tree (``remove-dir
--watch`` plans each new file on its own). All return :class:`PlannedItem` rows, with a
``skip_reason`` for anything that will not be processed. Pure file-system logic, no
torch.

Output names follow :mod:`unetbg.removal.names`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from unetbg.removal.formats import output_suffix
from unetbg.removal.names import output_texts

#: Extensions that folder planning treats as images (compared case-insensitively).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
SKIP_EXISTS = "exists; use --overwrite"
SKIP_NOT_IMAGE = "not an image extension"


class PlanError(ValueError):
    """The request itself is wrong (folders overlap, output onto an input, …)."""


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
    _check_writable(out)
    return out


def _check_writable(out: Path) -> None:
    """Refuse, before any model loads or job is recorded, an output folder that cannot
    be created or written (a path under a regular file, ``/proc``, a read-only mount,
    no permission): every image would fail later. The test is the act itself, a hidden
    folder made and removed in ``out`` or in its nearest existing parent, since
    permission bits do not tell (root passes them; ``/proc`` refuses root too)."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise PlanError(f"cannot create output folder {out}: {existing} is not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".unetbg-probe-", dir=existing)
    except OSError as exc:
        where = "write into it" if existing == out else f"create it in {existing}"
        raise PlanError(
            f"cannot use output folder {out}: cannot {where}: {exc.strerror or exc}"
        ) from None
    os.rmdir(probe)


def _finish(
    entries: list[tuple[Path, Path, str | None]],
    output_root: Path,
    suffix: str,
    overwrite: bool,
    forbidden_root: Path | None,
    input_files: set[Path] | None = None,
    folders: Iterable[Path] = (),
) -> list[PlannedItem]:
    todo = [i for i, (_, _, reason) in enumerate(entries) if reason is None]
    names = output_texts([entries[i][1] for i in todo], suffix, folders)
    outputs = dict(zip(todo, names, strict=True))
    check = _OutputCheck(output_root, overwrite, forbidden_root, input_files)
    items = []
    for i, (source, relative, reason) in enumerate(entries):
        output = None
        if reason is None:
            output = output_root / outputs[i]
            reason = check(output)
        items.append(PlannedItem(source, relative, output, reason, output_root, overwrite))
    return items


class _OutputCheck:
    """Why an output cannot be written where it is planned (``None``: it can).

    Each output folder is resolved once (a folder of 100,000 images is planned with one
    ``lstat`` per output, not one per path component), and an output in a folder that
    does not exist yet (a first run) needs no ``lstat`` at all; only an output that is
    itself a symlink is resolved on its own. Paths are built only for what a reason
    names: a million outputs are planned in this loop.
    """

    def __init__(
        self,
        output_root: Path,
        overwrite: bool,
        forbidden_root: Path | None,
        input_files: set[Path] | None = None,
    ) -> None:
        self.output_root, self.overwrite = output_root, overwrite
        self.forbidden_root, self.input_files = forbidden_root, input_files
        self.folders: dict[str, tuple[Path, bool, bool, bool]] = {}

    def _folder(self, folder: str) -> tuple[Path, bool, bool, bool]:
        """The folder resolved, whether it lies in the output / the input root, and
        whether it exists."""
        known = self.folders.get(folder)
        if known is None:
            real = Path(folder).resolve()
            forbidden = self.forbidden_root is not None and real.is_relative_to(self.forbidden_root)
            in_output = real.is_relative_to(self.output_root)
            known = self.folders[folder] = (real, in_output, forbidden, os.path.isdir(real))
        return known

    def __call__(self, output: Path) -> str | None:
        folder, in_output, in_input, exists = self._folder(os.path.dirname(output))
        found = None
        if exists:
            with contextlib.suppress(OSError):  # nothing there
                found = os.lstat(output)
        linked = found is not None and stat.S_ISLNK(found.st_mode)
        if linked:
            real = output.resolve()
            outside = not real.is_relative_to(self.output_root)
            inside_input = self.forbidden_root is not None and real.is_relative_to(
                self.forbidden_root
            )
        else:
            # It lies where its folder lies; it can only be the output (input) root
            # itself from a folder outside it, under that root's name: the real path
            # is built only then.
            forbidden = self.forbidden_root
            if not in_output or (forbidden and not in_input and output.name == forbidden.name):
                real = folder / output.name
            else:
                real = None
            outside = not in_output and real != self.output_root
            inside_input = in_input or (real is not None and real == forbidden)
        if outside or inside_input:
            where = "outside the output" if outside else "inside the input"
            return f"output would be written {where} folder (to {real or folder / output.name})"
        if self.input_files is not None and (real or folder / output.name) in self.input_files:
            return "output would overwrite an input"
        if found is not None:
            if output.is_dir() if linked else stat.S_ISDIR(found.st_mode):
                return "output path is an existing folder"
            if not self.overwrite:
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
    folders. Raises :class:`PlanError` when ``input_dir`` is not a folder, the two
    folders overlap, or ``output_dir`` cannot be created or written. Nothing is left
    created or written (the writability probe is removed at once).
    """
    suffix = output_suffix(output_format)
    src, input_root, output_root = _folder_roots(input_dir, output_dir)

    walk = _FolderWalk(input_root, output_root, follow_symlinks)
    walk.folder(src, Path(), (input_root,))
    return _finish(walk.entries, output_root, suffix, overwrite, input_root)


def _folder_roots(
    input_dir: str | os.PathLike, output_dir: str | os.PathLike
) -> tuple[Path, Path, Path]:
    """The input folder as given (``~`` expanded), resolved, and the output folder's
    root; raises :class:`PlanError` (:func:`plan_folder`'s list)."""
    src = Path(input_dir).expanduser()
    if not src.is_dir():
        raise PlanError(f"input folder {src} does not exist or is not a folder")
    input_root = src.resolve()
    output_root = _output_root(output_dir)
    _check_disjoint(input_root, output_root)
    return src, input_root, output_root


#: Why a link leaving the input folder is not followed.
_OUTSIDE = "symlink points outside the input folder; use --follow-symlinks"


class _FolderWalk:
    """Every entry under an input folder, in sorted order, with its skip reason (or
    ``None``): hidden names left out, sub-folders walked, symlinks judged by
    :meth:`_link` (:func:`plan_folder` says which are skipped and why)."""

    def __init__(self, input_root: Path, output_root: Path, follow_symlinks: bool) -> None:
        self.input_root, self.output_root = input_root, output_root
        self.follow_symlinks = follow_symlinks
        self.entries: list[tuple[Path, Path, str | None]] = []

    def folder(self, folder: Path, rel: Path, chain: tuple[Path, ...]) -> None:
        """Walk ``folder`` (shown as ``rel``); ``chain``: the real folders walked to it."""
        try:
            with os.scandir(folder) as it:
                listing = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.entries.append((folder, rel, f"cannot list folder: {exc.strerror or exc}"))
            return
        for entry in listing:
            if not entry.name.startswith("."):
                self.entry(Path(entry.path), rel / entry.name, chain, entry)

    def entry(
        self, path: Path, relative: Path, chain: tuple[Path, ...], found: os.DirEntry | None = None
    ) -> None:
        """Walk or judge one entry of the folder ``chain[-1]``; ``found``: its entry in
        the folder's listing (whose type the listing already tells), else it is looked up."""
        linked = found.is_symlink() if found is not None else path.is_symlink()
        target = None  # the real file, built only where asked for: once per image
        if linked:
            target = self._link(path, relative, chain)
            if target is None:
                return
        elif found.is_dir(follow_symlinks=False) if found is not None else path.is_dir():
            self.folder(path, relative, (*chain, chain[-1] / path.name))
            return
        reason = None
        if os.path.splitext(path.name)[1].lower() not in IMAGE_EXTENSIONS:
            reason = SKIP_NOT_IMAGE
        # A listing's entry knows its own type without a stat.
        elif not (
            found.is_file(follow_symlinks=False)
            if found and not linked
            else (target or chain[-1] / path.name).is_file()
        ):
            reason = "not a regular file"
        self.entries.append((path, relative, reason))

    def _link(self, path: Path, relative: Path, chain: tuple[Path, ...]) -> Path | None:
        """The file a symlink points to, to plan as any file; ``None`` when the link was
        skipped (its reason recorded) or its folder walked."""
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            return self._skip(path, relative, "broken symlink")
        except (RuntimeError, OSError):  # ELOOP (RuntimeError before 3.13)
            return self._skip(path, relative, "symlink loop")
        inside = target.is_relative_to(self.input_root)
        if target.is_relative_to(self.output_root) or (
            target.is_dir() and self.output_root.is_relative_to(target)
        ):
            # Outputs must never be read back as inputs.
            return self._skip(path, relative, "symlink points into the output folder")
        if target.is_dir():
            # Following a link to a folder that holds one we are walking (through any
            # number of links) would never end.
            if any(c.is_relative_to(target) for c in chain):
                return self._skip(path, relative, "symlink loop")
            if not self.follow_symlinks:
                reason = (
                    "symlinked folder inside the input folder (its images are planned there)"
                    if inside
                    else _OUTSIDE
                )
                return self._skip(path, relative, reason)
            self.folder(path, relative, (*chain, target))
            return None
        if not inside and not self.follow_symlinks:
            return self._skip(path, relative, _OUTSIDE)
        return target

    def _skip(self, path: Path, relative: Path, reason: str) -> None:
        self.entries.append((path, relative, reason))


def plan_in_folder(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    sources: Iterable[str | os.PathLike],
    output_format: str = "png",
    follow_symlinks: bool = False,
    overwrite: bool = False,
) -> list[PlannedItem]:
    """Plan ``sources``, files under ``input_dir``, as :func:`plan_folder` plans them
    within the whole folder, without walking it: the work grows with the names in the
    files' own folders, not with the tree (``remove-dir --watch``: a new photo in a
    folder of a million is planned at once).

    A file's output name depends on the names it can clash with (module docstring),
    and every one of those, through a chain of clashes too, begins with the file's name
    up to its first dot, case-folded: the output names made from a name begin with its
    stem, followed by a dot. ``a.jpg`` can clash with ``A.png``, ``a.jpg.jpg`` or a
    folder ``a.png/``, never with ``b.jpg``. So one listing of the names of each file's
    folder finds the siblings to judge (a sibling folder is walked: it matters only if
    it holds inputs). Left out, as :func:`plan_folder` leaves them out or would not name
    them: sources not under ``input_dir``, gone, folders, with a hidden name or folder,
    and those under a symlinked folder (the walk meets those through the link, if at
    all, and a watch does not see them). Raises :class:`PlanError` as
    :func:`plan_folder` does.
    """
    suffix = output_suffix(output_format)
    src, input_root, output_root = _folder_roots(input_dir, output_dir)

    by_folder: dict[Path, set[Path]] = defaultdict(set)
    for source in map(Path, sources):
        if source.is_relative_to(src) and source != src:
            relative = source.relative_to(src)
            if not any(part.startswith(".") for part in relative.parts):
                by_folder[relative.parent].add(source)
    walk = _FolderWalk(input_root, output_root, follow_symlinks)
    wanted: set[Path] = set()
    for rel, members in sorted(by_folder.items()):
        chain = _real_chain(input_root, rel)
        if chain is None:
            continue
        wanted |= members
        for name in _clash_candidates(src / rel, {m.name for m in members}):
            walk.entry(src / rel / name, rel / name, chain)
    # A sibling folder walked for one folder's names may be another's: count each once.
    entries = list({entry[1]: entry for entry in walk.entries}.values())
    planned = _finish(entries, output_root, suffix, overwrite, input_root)
    return [item for item in planned if item.source in wanted]


def _real_chain(input_root: Path, rel: Path) -> tuple[Path, ...] | None:
    """The real folders a walk passes from ``input_root`` to ``rel``; ``None`` when one
    of them is a symlink or no folder (see :func:`plan_in_folder`)."""
    chain = [input_root]
    for part in rel.parts:
        folder = chain[-1] / part
        if folder.is_symlink() or not folder.is_dir():
            return None
        chain.append(folder)
    return tuple(chain)


def _clash_candidates(folder: Path, names: set[str]) -> list[str]:
    """The names in ``folder`` that its files ``names`` could clash with, those
    included, in the order a walk meets them (see :func:`plan_in_folder`)."""
    prefixes = tuple({name.casefold().split(".", 1)[0] for name in names})
    try:
        listing = os.listdir(folder)
    except OSError:
        return []
    return sorted(
        name
        for name in listing
        if not name.startswith(".") and name.casefold().startswith(prefixes)
    )


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
    user's other photos, which an output could replace (``a.jpg`` -> ``a.png``), or
    if ``output_dir`` cannot be created or written. A folder below an input's folder
    is fine.
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
