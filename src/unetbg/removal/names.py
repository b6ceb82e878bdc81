"""Output names: which relative output path each input gets.

The output of ``sub/a.jpg`` is ``sub/a.png`` (the suffix is replaced by the format's:
``.png``, ``.webp`` or ``.jpg``). When several inputs would get the same output name
(``a.jpg`` and ``a.png`` in one folder; names that differ only in case, which collide
on case-insensitive file systems), *every* member of the clash keeps its original
name and gains the new suffix: ``a.jpg.png`` and ``a.png.png``. The result depends only
on the input names, never on what already exists in the output folder, so rerunning
a job maps each input to the same output. In the rare case that such a name still
clashes (an input literally named ``a.jpg.png``, say), a ``~N`` counter is added
before the suffix, in sorted order of the input paths.

Pure string logic, no file-system access: a million names are planned at a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path


def unique_output_names(
    relatives: Sequence[Path], suffix: str, folders: Iterable[Path] = ()
) -> list[Path]:
    """Output relative paths for input relative paths (see the module docstring).
    ``folders``: more folders that hold outputs, beyond those of ``relatives`` (a
    folder planned in parts, :mod:`unetbg.removal.streaming`)."""
    return [Path(name) for name in output_texts(relatives, suffix, folders)]


def _with_suffix(text: str, suffix: str) -> str:
    """``text`` (a relative POSIX path) with its last suffix replaced by ``suffix``, or
    ``suffix`` added when it has none (``Path.suffix``'s rule, on a string)."""
    dot = text.rfind(".")
    slash = text.rfind("/")
    # A suffix needs a dot inside the name: not its first nor its last character.
    return text[:dot] + suffix if slash + 1 < dot < len(text) - 1 else text + suffix


def output_texts(relatives: Sequence[Path], suffix: str, folders: Iterable[Path]) -> list[str]:
    """:func:`unique_output_names` as POSIX strings: a million names are planned here,
    and a ``Path`` operation costs as much as the rest of an image's planning."""
    texts = [r.as_posix() for r in relatives]
    names = [_with_suffix(t, suffix) for t in texts]
    # A file output must not take the name of a folder that holds other outputs.
    # Each folder's chain of parents is taken once, not once per image in it. Keys are
    # case-folded so outputs are distinct on case-insensitive file systems too.
    taken = {Path(f).as_posix().casefold() for f in folders}
    for parent in {t.rpartition("/")[0] for t in texts}:
        while parent:
            taken.add(parent.casefold())
            parent = parent.rpartition("/")[0]
    renamed = [False] * len(names)
    counters = [0] * len(names)
    while True:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(names):
            groups[name.casefold()].append(i)
        clashes = [g for k, g in groups.items() if len(g) > 1 or k in taken]
        if not clashes:
            return names
        for group in clashes:
            fresh = [i for i in group if not renamed[i]]
            if fresh:
                for i in fresh:
                    names[i] = texts[i] + suffix
                    renamed[i] = True
                continue
            # Every member already keeps its full name: number all but the first
            # (all of them when the clash is with a folder).
            order = sorted(group, key=lambda i: texts[i])
            start = 0 if names[group[0]].casefold() in taken else 1
            for rank, i in enumerate(order[start:], start=1):
                counters[i] += rank
                names[i] = f"{texts[i]}~{counters[i]}{suffix}"
