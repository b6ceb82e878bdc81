"""Planning a folder tree in batches, as it is walked: :func:`plan_folder_in_batches`.

:func:`~unetbg.removal.planning.plan_folder` returns the whole tree's plan at once; a
job of a million images cannot wait for that (nor hold it) before its first chunk is
queued (issue 23, item 3). This walk yields the same :class:`PlannedItem` rows — the
same output names, skip reasons and checks — in batches, holding one folder's listing
at a time.

Why a part of a folder can be named on its own: every name an image's output name can
clash with (module doc of :mod:`~unetbg.removal.planning`) is in the same folder and
begins, case-folded, with the image's name up to its first dot (as
:func:`~unetbg.removal.planning.plan_in_folder` relies on too). A folder's listing is
sorted by that prefix, so each clash group is whole in one slice. Outputs can also
clash with a sub-folder that holds images; only a sub-folder whose name ends with the
output suffix can, and such a (rare) one is walked ahead until it shows an image.
Pure file-system logic, no torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import groupby
from pathlib import Path

from unetbg.removal.formats import output_suffix
from unetbg.removal.planning import PlannedItem, _finish, _folder_roots, _FolderWalk

#: An entry as the walk records it: source, path relative to the input folder, reason.
Entry = tuple[Path, Path, "str | None"]
#: A folder still to walk: its path, relative path and the real folders leading to it.
Folder = tuple[Path, Path, tuple[Path, ...]]


def plan_folder_in_batches(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    output_format: str = "png",
    follow_symlinks: bool = False,
    overwrite: bool = False,
    batch: int = 5_000,
) -> Iterator[list[PlannedItem]]:
    """What :func:`~unetbg.removal.planning.plan_folder` plans, in lists of about
    ``batch`` items (more when one clash group is larger), folder by folder: a
    folder's own files, then its sub-folders. The order within a folder follows the
    clash groups (``a.jpg``, ``A.png``, ``b.jpg``), not plain sorted order.

    The folders are checked now (raises :class:`~unetbg.removal.planning.PlanError`
    as ``plan_folder`` does); the walk itself happens as the batches are taken.
    """
    suffix = output_suffix(output_format)
    src, input_root, output_root = _folder_roots(input_dir, output_dir)
    walk = _SlicedWalk(input_root, output_root, follow_symlinks, suffix)
    return _batches(walk, (src, Path(), (input_root,)), output_root, overwrite, batch)


def _batches(
    walk: _SlicedWalk, root: Folder, output_root: Path, overwrite: bool, batch: int
) -> Iterator[list[PlannedItem]]:
    ready: list[PlannedItem] = []
    for entries, below in walk.slices(root, batch):
        # Outputs must not take the name of a sub-folder that holds images.
        holding = [sub[1] for sub in below if walk.may_clash(sub[1]) and walk.holds_image(*sub)]
        ready += _finish(
            entries, output_root, walk.suffix, overwrite, walk.input_root, folders=holding
        )
        if len(ready) >= batch:
            yield ready
            ready = []
    if ready:
        yield ready


class _SlicedWalk(_FolderWalk):
    """:class:`_FolderWalk`, one folder at a time: a sub-folder met in a listing is put
    aside (:meth:`folder`) and walked after the folder's own entries."""

    def __init__(
        self, input_root: Path, output_root: Path, follow_symlinks: bool, suffix: str
    ) -> None:
        super().__init__(input_root, output_root, follow_symlinks)
        self.suffix = suffix
        self.below: list[Folder] = []

    def folder(self, folder: Path, rel: Path, chain: tuple[Path, ...]) -> None:
        self.below.append((folder, rel, chain))

    def slices(self, root: Folder, size: int) -> Iterator[tuple[list[Entry], list[Folder]]]:
        """The tree's entries, in slices of about ``size`` that split no clash group,
        each with the sub-folders met in it (to be walked later). Folders whose paths
        differ only in case are walked as one: their outputs share a folder on a
        case-insensitive file system, so their names can clash."""
        todo: list[list[Folder]] = [[root]]
        while todo:
            met: list[Folder] = []
            for entries, below in self._listing(todo.pop(), size):
                met += below
                yield entries, below
            alike: dict[str, list[Folder]] = {}
            for sub in met:
                alike.setdefault(sub[1].as_posix().casefold(), []).append(sub)
            todo.extend(reversed(alike.values()))  # depth first, in listing order

    def _listing(
        self, folders: list[Folder], size: int
    ) -> Iterator[tuple[list[Entry], list[Folder]]]:
        rows = []
        for folder, rel, chain in folders:
            try:
                with os.scandir(folder) as it:
                    shown = rel.as_posix()
                    rows += [
                        (_clash_prefix(e.name), e.name, shown, rel, chain, e)
                        for e in it
                        if not e.name.startswith(".")
                    ]
            except OSError as exc:
                self.entries.append((folder, rel, f"cannot list folder: {exc.strerror or exc}"))
        rows.sort(key=lambda row: row[:3])
        for _, group in groupby(rows, key=lambda row: row[0]):
            for _, name, _, rel, chain, found in group:
                self.entry(Path(found.path), rel / name, chain, found)
            if len(self.entries) >= size:
                yield self._take()
        yield self._take()

    def _take(self) -> tuple[list[Entry], list[Folder]]:
        taken = self.entries, self.below
        self.entries, self.below = [], []
        return taken

    def may_clash(self, rel: Path) -> bool:
        """Whether an output name can equal the sub-folder ``rel``'s name."""
        return rel.name.casefold().endswith(self.suffix.casefold())

    def holds_image(self, folder: Path, rel: Path, chain: tuple[Path, ...]) -> bool:
        """Whether the sub-folder holds an image to process, anywhere below it (then
        outputs must not take its name, as ``plan_folder`` rules); walked apart, up to
        the first one."""
        ahead = _SlicedWalk(self.input_root, self.output_root, self.follow_symlinks, self.suffix)
        return any(
            reason is None
            for entries, _ in ahead.slices((folder, rel, chain), 1)
            for _, _, reason in entries
        )


def _clash_prefix(name: str) -> str:
    """The part of a name that everything it can clash with shares (module doc)."""
    return name.casefold().split(".", 1)[0]
