"""Named training sources: ``KIND:PATH[:WEIGHT]`` specs and one reader per kind and split.

Kinds:

- ``coco``: a COCO 2017 folder (``annotations/``, ``train2017/``, ``val2017/``); it trains on
  ``train2017`` and validates on ``val2017`` (for ``coco-mini``, our validation set).
- ``masks``: a mask folder (:mod:`unetbg.data.folders`), split by file-name hash.

Each reader has the same small interface, so mixing and evaluation need not know the kind:
``name``, ``len()``, ``load(i) -> (image, mask, ignore)`` (``H×W×3`` uint8 and two ``H×W``
uint8 {0, 1} maps), ``key(i)`` (the image's name, for logs) and ``has_person(i)`` (without
decoding the photo, for drawing photos without people). What a photo without people is,
for the readers, copy-paste and ``unetbg evaluate`` alike: :func:`shows_nobody`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

KINDS = ("coco", "masks")


class SourceReader(Protocol):
    name: str

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def key(self, index: int) -> str: ...

    def has_person(self, index: int) -> bool: ...


@dataclass(frozen=True)
class DataSource:
    """One source of a run: its kind, folder and sampling weight (share of each epoch)."""

    kind: str
    path: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown data kind {self.kind!r}; valid kinds: {', '.join(KINDS)}")
        if not self.weight >= 0:
            raise ValueError(f"data weight must be >= 0, got {self.weight} for {self.path}")

    @classmethod
    def parse(cls, spec: str) -> DataSource:
        """``"masks:/data/ccp-person:0.4"`` -> ``DataSource("masks", "/data/ccp-person", 0.4)``.

        The weight is optional (default 1). The path is made absolute here, once, since it
        crosses into worker processes and run folders.
        """
        kind, sep, rest = spec.partition(":")
        if not sep or not rest:
            raise ValueError(
                f"data source {spec!r} is not KIND:PATH[:WEIGHT] (kinds: {', '.join(KINDS)})"
            )
        path, weight = rest, 1.0
        head, sep, tail = rest.rpartition(":")
        if sep:
            try:
                weight = float(tail)
            except ValueError:
                pass  # a ':' inside the path itself
            else:
                path = head
        return cls(kind, os.path.abspath(os.path.expanduser(path)), weight)

    def spec(self) -> str:
        return f"{self.kind}:{self.path}:{self.weight:g}"

    @property
    def name(self) -> str:
        return Path(self.path).name or self.path

    def reader(self, split: str, val_percent: int = 10, name: str | None = None) -> SourceReader:
        """The ``train`` or ``val`` part of this source, called ``name`` (default: folder)."""
        if self.kind == "coco":
            return CocoReader(self.path, split, name or self.name)
        from unetbg.data.folders import MaskFolder

        return MaskFolder(Path(self.path), split, val_percent, name=name or self.name)


class CocoReader:
    """The person masks of one COCO split through the :class:`SourceReader` interface."""

    def __init__(self, root: str | os.PathLike, split: str, name: str) -> None:
        from unetbg.data.coco import CocoPersons
        from unetbg.data.filters import PersonFilter

        self.name = name
        self.persons = CocoPersons(root, split, PersonFilter(crowd="ignore"))

    def __len__(self) -> int:
        return len(self.persons)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image_id = self.persons.image_ids[index]
        image = self.persons.read_image(image_id)
        mask, ignore = self.persons.masks(image_id)
        return image, mask, ignore

    def key(self, index: int) -> str:
        return str(self.persons.image_ids[index])

    def has_person(self, index: int) -> bool:
        """Any person annotation, crowd regions included: those photos are not empty."""
        return bool(self.persons.person_annotations(self.persons.image_ids[index]))

    def objects(self) -> list[dict]:
        """This split's things that are not people (:meth:`CocoPersons.other_objects`)."""
        return self.persons.other_objects()

    def cut_out(self, ann: dict) -> tuple[np.ndarray, np.ndarray]:
        """One of :meth:`objects` as ``(picture, outline)``."""
        return self.persons.cut_out(ann)


def shows_nobody(mask: np.ndarray, ignore: np.ndarray) -> bool:
    """A photo without people: an empty mask and no ignore area (crowd regions are people)."""
    return not mask.any() and not ignore.any()


def unique_names(sources: list[DataSource]) -> list[str]:
    """Each source's name, with ``-2``, ``-3`` ... where two folders share a name."""
    names: list[str] = []
    for source in sources:
        name, n = source.name, 2
        while name in names:
            name, n = f"{source.name}-{n}", n + 1
        names.append(name)
    return names


def manifest_sha256(reader: SourceReader) -> str:
    """sha256 over the sorted names of what ``reader`` holds: which photos a model saw."""
    digest = hashlib.sha256()
    for index in range(len(reader)):
        digest.update(reader.key(index).encode("utf-8") + b"\n")
    return digest.hexdigest()
