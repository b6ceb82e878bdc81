"""Several sources in one run: weighted training mixtures and per-source validation sets.

:class:`MixedSamples` draws each epoch's samples from the training readers in proportion to
their weights (with ``swap``, some of them on a new backdrop,
:mod:`unetbg.data.composite`); with ``empty_share`` that share of the positions instead holds a photo
without people, drawn from every source that trains. Which image a position holds and how
it is composited are fixed by ``(seed, epoch, index)`` alone, like the augmentation
(``unetbg.training.loaders``), so an epoch can be replayed exactly after a resume. Within a
source the images are taken in a seeded order that visits each one before any repeats, so a
small source with a large weight is cycled, not sampled with replacement.

:class:`SourceSamples` concatenates validation readers in a fixed order and tags every
sample with its source index, so validation can report each source and the overall figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from unetbg.data.coco import UnreadableImageError
from unetbg.data.composite import BackdropSwap
from unetbg.data.copypaste import CopyPaste
from unetbg.data.sources import SourceReader


def _load_readable(
    reader: SourceReader, index: int, unreadable: dict[tuple[str, str], str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``reader.load(index)``, or the next readable image of the same reader."""
    n = len(reader)
    for step in range(n):
        i = (index + step) % n
        key = (reader.name, reader.key(i))
        if key in unreadable:
            continue
        try:
            return reader.load(i)
        except UnreadableImageError as exc:
            unreadable[key] = str(exc)
    raise RuntimeError(f"none of the {n} images of {reader.name} could be read")


class MixedSamples(Dataset):
    """``samples_per_epoch`` samples per epoch from ``readers``, drawn by ``weights``."""

    def __init__(
        self,
        readers: Sequence[SourceReader],
        weights: Sequence[float],
        transform: Callable[..., dict],
        samples_per_epoch: int,
        seed: int,
        copy_paste: CopyPaste | None = None,
        partial: Sequence[bool] = (),
        empty_share: float = 0.0,
        swap: BackdropSwap | None = None,
        swappable: Sequence[bool] = (),
    ) -> None:
        if len(readers) != len(weights) or not readers:
            raise ValueError("need one weight per reader and at least one reader")
        for reader, weight in zip(readers, weights, strict=True):
            if weight > 0 and len(reader) == 0:
                raise ValueError(f"training source {reader.name} has no images")
        total = float(sum(weights))
        if total <= 0:
            raise ValueError("at least one training source needs a weight above 0")
        if samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
        self.readers = list(readers)
        self.shares = np.asarray(weights, np.float64) / total
        self.transform = transform
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.copy_paste = copy_paste
        self.swap = swap
        #: Per reader: may ``swap`` move its samples onto a new backdrop?
        self.swappable = list(swappable) or [True] * len(self.readers)
        if len(self.swappable) != len(self.readers):
            raise ValueError("need one swappable flag per reader")
        #: Per reader: do its masks label only some of the people (``sample["partial"]``)?
        self.partial = list(partial) or [False] * len(self.readers)
        if len(self.partial) != len(self.readers):
            raise ValueError("need one partial flag per reader")
        self.unreadable: dict[tuple[str, str], str] = {}
        self.epoch = 0
        self._plan: list[tuple[int, int]] | None = None
        if not 0 <= empty_share <= 1:
            raise ValueError(f"empty_share must be in [0, 1], got {empty_share}")
        self.empty_share = empty_share
        #: ``(reader, index)`` of every photo without people of the drawn sources. A source
        #: labelling only some people cannot vouch that a photo has nobody in it.
        self.empties: list[tuple[int, int]] = []
        if empty_share > 0:
            self.empties = [
                (r, i)
                for r, (reader, weight) in enumerate(zip(self.readers, weights, strict=True))
                if weight > 0 and not self.partial[r]
                for i in range(len(reader))
                if not reader.has_person(i)
            ]
            if not self.empties:
                names = ", ".join(r.name for r, w in zip(self.readers, weights, strict=True) if w)
                raise ValueError(
                    f"empty_share {empty_share} needs photos without people, and no training "
                    f"source has any ({names})"
                )

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._plan = epoch, None

    def plan(self) -> list[tuple[int, int]]:
        """``(reader, image index)`` of each position of the current epoch."""
        if self._plan is None:
            rng = np.random.default_rng([self.seed, self.epoch, 1])
            which = rng.choice(len(self.readers), size=self.samples_per_epoch, p=self.shares)
            plan: list[tuple[int, int]] = []
            taken = [0] * len(self.readers)
            orders = [
                np.random.default_rng([self.seed, self.epoch, 2, r]).permutation(len(reader))
                for r, reader in enumerate(self.readers)
            ]
            for r in which.tolist():
                order = orders[r]
                plan.append((r, int(order[taken[r] % len(order)])))
                taken[r] += 1
            if self.empty_share > 0:
                # Own streams: without empty_share the plan is what it always was, so
                # runs from before it resume exactly.
                swap = np.random.default_rng([self.seed, self.epoch, 4]).random(len(plan))
                picks = np.random.default_rng([self.seed, self.epoch, 5]).permutation(
                    len(self.empties)
                )
                positions = np.flatnonzero(swap < self.empty_share)
                for n, position in enumerate(positions.tolist()):
                    plan[position] = self.empties[int(picks[n % len(picks)])]
            self._plan = plan
        return self._plan

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict:
        r, item = self.plan()[index]
        image, mask, ignore = _load_readable(self.readers[r], item, self.unreadable)
        swapped = False
        if self.swap is not None and self.swappable[r]:
            # Its own stream: runs without the swap draw what they always drew.
            rng = np.random.default_rng([self.seed, self.epoch, 6, index])
            swapped_image, mask, ignore = self.swap(image, mask, ignore, rng)
            swapped, image = swapped_image is not image, swapped_image
        if self.copy_paste is not None:
            rng = np.random.default_rng([self.seed, self.epoch, 3, index])
            image, mask, ignore = self.copy_paste(image, mask, ignore, rng)
        sample = self.transform(image, mask, ignore)
        sample["source"] = r
        # A swapped sample holds the labelled person alone: its mask is complete.
        sample["partial"] = self.partial[r] and not swapped
        sample["swapped"] = swapped  # a teacher (--distill-from) teaches the others only
        return sample


class SourceSamples(Dataset):
    """All images of ``readers`` one after the other, each sample tagged with its source."""

    def __init__(self, readers: Sequence[SourceReader], transform: Callable[..., dict]) -> None:
        self.readers = list(readers)
        self.transform = transform
        self.offsets = np.cumsum([0] + [len(r) for r in self.readers])
        self.unreadable: dict[tuple[str, str], str] = {}
        if self.offsets[-1] == 0:
            raise ValueError("no validation images in " + ", ".join(r.name for r in readers))

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.readers]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        r = int(np.searchsorted(self.offsets, index, side="right")) - 1
        image, mask, ignore = _load_readable(
            self.readers[r], index - int(self.offsets[r]), self.unreadable
        )
        sample = self.transform(image, mask, ignore)
        sample["source"] = r
        return sample
