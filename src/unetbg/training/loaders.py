"""Datasets and DataLoaders for a run, built so that an epoch can be replayed exactly.

Two things decide what a training epoch sees: the order of the images and the random
augmentation of each one. Both are derived from ``(seed, epoch)`` alone:

- :class:`EpochSampler` draws the order from a ``torch.Generator`` seeded with
  ``seed + epoch`` and can skip the first ``k`` batches (a resume in the middle of an epoch);
- :class:`EpochSeededSamples` reseeds the augmentation pipeline from
  ``(seed, epoch, index)`` before each sample, so a sample's augmentation does not depend on
  which worker loads it or on what was loaded before it.

With ``num_workers > 0`` the data presets reseed their pipeline once per worker on its first
sample (see ``unetbg.data.presets``), which overrides the per-sample seed for that one sample;
runs stay reproducible, but a mid-epoch resume is exact only with ``num_workers=0``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from unetbg.data import CocoPersonDataset, CocoPersons, EvalPreset, PersonFilter, TrainPreset
from unetbg.data.composite import BackdropSwap, SwapSettings
from unetbg.data.copypaste import CopyPaste
from unetbg.data.mixed import MixedSamples, SourceSamples
from unetbg.data.sources import CocoReader, unique_names
from unetbg.training.config import TrainConfig


class EpochSampler(Sampler[int]):
    """A permutation of ``range(n)`` fixed by ``(seed, epoch)``, optionally skipping a prefix."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Use the order of ``epoch`` and leave out its first ``skip`` indices."""
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        return iter(order[self.skip :])

    def __len__(self) -> int:
        return self.n - self.skip


class EpochSeededSamples(Dataset):
    """Wraps a training dataset so each sample's augmentation is seeded from its index."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        self.pipeline = base.transform.transform  # the preset's albumentations Compose

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        base = self.dataset.dataset if isinstance(self.dataset, Subset) else self.dataset
        if hasattr(base, "set_epoch"):  # a mixture's epoch decides which images it holds
            base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0]
        self.pipeline.set_random_seed(int(state))
        return self.dataset[index]


@dataclass
class RunData:
    """The loaders of a run plus what ``fit`` needs to steer and report them."""

    train_loader: DataLoader
    val_loader: DataLoader
    train_sampler: EpochSampler
    train_samples: EpochSeededSamples
    train_images: int
    val_images: int
    #: Names of the validation sources, in the order of the samples' ``source`` tag
    #: (empty for a COCO-only run, whose samples carry no tag).
    val_sources: list[str] = field(default_factory=list)
    #: Names of the training sources, in the order of the training samples' ``source`` tag.
    train_sources: list[str] = field(default_factory=list)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Prepare the training loader for ``epoch`` (1-based), skipping whole batches."""
        batch_size = self.train_loader.batch_size
        self.train_sampler.set_epoch(epoch, skip_batches * batch_size)
        self.train_samples.set_epoch(epoch)
        # Worker seeds come from the loader's generator: fix them per epoch too.
        self.train_loader.generator.manual_seed(self.train_sampler.seed + epoch)


def _limited(dataset: CocoPersonDataset, limit: int | None) -> CocoPersonDataset | Subset:
    if limit is None or limit >= len(dataset):
        return dataset
    return Subset(dataset, range(limit))


def _train_preset(cfg: TrainConfig) -> TrainPreset | EvalPreset:
    if not cfg.augment:
        return EvalPreset(cfg.image_size)
    return TrainPreset(
        cfg.image_size, seed=cfg.seed, max_zoom=cfg.max_zoom, wide=cfg.augment_range == "wide"
    )


def build_data(cfg: TrainConfig) -> RunData:
    """Datasets and loaders for ``cfg`` (``num_workers`` and ``pin_memory`` already resolved)."""
    if cfg.data:
        return _mixed_data(cfg)
    if cfg.coco_root is None:
        raise ValueError(
            "no training data: pass a COCO 2017 folder (--coco-root) or sources (--data)"
        )
    person_filter = PersonFilter(min_area=cfg.min_area, crowd=cfg.crowd)
    train_preset = _train_preset(cfg)
    train_base = _limited(
        CocoPersonDataset(CocoPersons(cfg.coco_root, cfg.train_split, person_filter), train_preset),
        cfg.train_limit,
    )
    val_base = _limited(
        CocoPersonDataset(
            CocoPersons(cfg.coco_root, cfg.val_split, person_filter), EvalPreset(cfg.image_size)
        ),
        cfg.val_limit,
    )
    return _loaders(cfg, EpochSeededSamples(train_base, cfg.seed), val_base, [])


def _mixed_data(cfg: TrainConfig) -> RunData:
    """Training mixture over every source by weight; validation on each source's val part."""
    sources = cfg.sources()
    names = unique_names(sources)
    train = [s.reader("train", cfg.val_percent, n) for s, n in zip(sources, names, strict=True)]
    val = [s.reader("val", cfg.val_percent, n) for s, n in zip(sources, names, strict=True)]
    weights = [s.weight for s in sources]
    copy_paste = None
    if cfg.copy_paste > 0:
        donors = [r for r, w in zip(train, weights, strict=True) if w > 0]
        copy_paste = CopyPaste(
            donors, cfg.copy_paste, cfg.copy_paste_max, onto_empty=cfg.copy_paste_empty
        )
    train_preset = _train_preset(cfg)
    swap = _backdrop_swap(cfg, train, weights, names) if cfg.background_swap > 0 else None
    mixture = MixedSamples(
        train,
        weights,
        train_preset,
        cfg.samples_per_epoch or sum(len(r) for r, w in zip(train, weights, strict=True) if w),
        cfg.seed,
        copy_paste,
        partial=[n in cfg.partial_sources for n in names],
        empty_share=cfg.empty_share,
        swap=swap,
        swappable=[not cfg.swap_sources or n in cfg.swap_sources for n in names],
    )
    val_readers = [r for r in val if len(r)]
    val_base: Dataset = SourceSamples(val_readers, EvalPreset(cfg.image_size))
    if cfg.val_limit is not None and cfg.val_limit < len(val_base):
        # Evenly spaced, so that every source stays represented in a capped validation.
        picks = np.linspace(0, len(val_base) - 1, cfg.val_limit).round().astype(int)
        val_base = Subset(val_base, sorted(set(picks.tolist())))
    data = _loaders(
        cfg, EpochSeededSamples(mixture, cfg.seed), val_base, [r.name for r in val_readers]
    )
    data.train_sources = list(names)
    return data


def _backdrop_swap(cfg: TrainConfig, train, weights, names) -> BackdropSwap:
    """The background swap of a run; its photo backdrops are the training photos without
    people of the sources that label everyone, its cut-out objects (``swap_objects``) the
    other classes of the COCO sources' training photos (never a validation photo)."""
    photos = [
        (reader, i)
        for reader, weight, name in zip(train, weights, names, strict=True)
        if weight > 0 and name not in cfg.partial_sources
        for i in range(len(reader))
        if not reader.has_person(i)
    ]

    def load(index: int) -> np.ndarray:
        reader, i = photos[index]
        return reader.load(i)[0]

    objects = [
        (reader, ann)
        for reader, weight in zip(train, weights, strict=True)
        if cfg.swap_objects and weight > 0 and isinstance(reader, CocoReader)
        for ann in reader.objects()
    ]

    def cut(index: int) -> tuple[np.ndarray, np.ndarray]:
        reader, ann = objects[index]
        return reader.cut_out(ann)

    rest = 1 - cfg.swap_close_ups
    framings = (rest * 4 / 7, rest * 3 / 7, cfg.swap_close_ups)
    return BackdropSwap(
        cfg.background_swap,
        load,
        len(photos),
        SwapSettings(framing_shares=framings, hard_cases=cfg.swap_hard_cases),
        objects=cut,
        object_count=len(objects),
    )


def _loaders(cfg: TrainConfig, train_samples, val_base, val_sources: list[str]) -> RunData:
    sampler = EpochSampler(len(train_samples), cfg.seed)
    # A last batch of one image gives noisy BatchNorm statistics; drop it unless it is all.
    drop_last = len(train_samples) > cfg.batch_size
    common = {
        "num_workers": cfg.num_workers,
        "pin_memory": cfg.pin_memory,
        # Workers are recreated each epoch so they pick up the new epoch number.
        "persistent_workers": False,
    }
    train_loader = DataLoader(
        train_samples,
        batch_size=cfg.batch_size,
        sampler=sampler,
        drop_last=drop_last,
        generator=torch.Generator(),
        **common,
    )
    val_loader = DataLoader(val_base, batch_size=cfg.batch_size, shuffle=False, **common)
    return RunData(
        train_loader,
        val_loader,
        sampler,
        train_samples,
        len(train_samples),
        len(val_base),
        val_sources,
    )
