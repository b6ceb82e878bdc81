"""Training configuration: one typed dataclass, four named presets, one resolver.

Layering is ``TrainConfig`` defaults (= the ``balanced`` preset) < named preset < explicit
overrides (CLI flags, job parameters). Fields left at ``None`` that depend on the device
(``num_workers``, ``pin_memory``, ``amp``, ``channels_last``) are filled in by
:meth:`TrainConfig.for_device` once the device is known; the run folder's ``config.json``
holds that fully resolved form, so a run can be repeated from its folder alone.

This module imports no torch so the CLI can build its options without loading it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unetbg.data.sources import DataSource

OPTIMIZERS = ("adamw",)
#: Per-step learning-rate schedule: linear warm-up over ``warmup_fraction`` of all steps, then
#: cosine decay to ``min_lr_ratio * lr``. Chosen over OneCycle because it does not need the
#: peak found by a range test, and it stays well defined when a run is extended on resume.
SCHEDULERS = ("cosine",)
CROWD_MODES = ("ignore", "background", "skip")
AUGMENT_RANGES = ("standard", "wide")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Build it with :func:`resolve_config`."""

    preset: str = "balanced"
    #: COCO 2017 root (``annotations/``, ``train2017/``, ``val2017/``).
    coco_root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    #: More sources, ``KIND:PATH[:WEIGHT]`` (``unetbg.data.sources``): mixed into training by
    #: weight and each validated on its own val part. Empty: ``coco_root`` alone, as before.
    data: tuple[str, ...] = ()
    #: Share of each mask folder (by file-name hash) kept for validation.
    val_percent: int = 10
    #: Names of training sources whose masks label only some of the people (ccp-person's
    #: main person): background the model calls person away from them is left out of the
    #: loss (``unetbg.training.partial``) instead of teaching that a bystander is background.
    partial_sources: tuple[str, ...] = ()
    #: Samples drawn per epoch from mixed sources; ``None``: all their training images.
    samples_per_epoch: int | None = None
    #: Probability of pasting people from the training sources into a sample (0: off).
    copy_paste: float = 0.0
    copy_paste_max: int = 3
    #: Share of each epoch drawn from the training photos without any person (all sources,
    #: pooled), on top of those the weights draw: the person sets have few such photos.
    empty_share: float = 0.0
    #: Paste into photos without any person too. ``False`` keeps them as pure negatives:
    #: without those, a model calls any large central object (a pizza, a bear) a person.
    copy_paste_empty: bool = True
    #: Probability of moving a sample's labelled people onto a new backdrop
    #: (``unetbg.data.composite``; 0: off): teaches what a person looks like rather than
    #: what the training photos' backgrounds look like.
    background_swap: float = 0.0
    #: Names of the sources whose samples may be swapped (empty: every source). Swapping
    #: COCO's scenes too turns street scenes into single portraits, and coco-mini val fell.
    swap_sources: tuple[str, ...] = ()
    #: Share of the swapped samples framed head and shoulders (the rest: 4/7 whole, 3/7 half).
    swap_close_ups: float = 0.3
    #: Lay cut-outs of the COCO sources' other objects (training photos) on swapped backdrops:
    #: blob-shaped crops alone left a model calling any salient thing on a plain ground a person.
    swap_objects: bool = False
    #: Probability of each hard case on a swapped sample (``composite.SwapSettings``): COCO's
    #: people are often cut, back-lit or covered, and swap-trained models lost those.
    swap_hard_cases: float = 0.0
    #: Keep and evaluate an exponential moving average of the weights; ``None``: raw weights.
    ema_decay: float | None = None

    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 1e-6
    image_size: int = 384
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    warmup_fraction: float = 0.03
    min_lr_ratio: float = 0.01
    #: Max gradient L2 norm; ``None`` disables clipping.
    grad_clip: float | None = 1.0
    #: Stop after this many epochs without a val IoU gain above ``min_delta``; ``None``: never.
    patience: int | None = 10
    min_delta: float = 1e-4
    #: Train with the random augmentation pipeline; ``False`` uses the eval letterbox only.
    augment: bool = True
    #: Largest random rescale of the letterboxed photo before the crop. Above 1 the crop
    #: shows part of the photo, as large people cut by the frame look at inference.
    max_zoom: float = 1.6
    #: ``standard``: the first models' augmentation; ``wide``: photos as users bring them
    #: (``unetbg.data.presets``: rare ±90° rotations, any hue, blur, noise, JPEG 30–95).
    augment_range: str = "standard"
    #: A fresh run's start: ``default`` (the shipped model), a checkpoint of the same model
    #: config, or ``None``: the encoder's ``encoder_weights``.
    init_weights: str | None = None
    #: A teacher (``default`` or a checkpoint of the same model config) whose soft masks are a
    #: second target on the samples that keep their own photo: fine-tuning for new
    #: backdrops lost people in COCO scenes that the shipped model found (docs/model-card.md).
    distill_from: str | None = None
    #: Weight of the teacher's term (BCE against its probabilities) beside the labels' terms.
    distill_weight: float = 1.0
    #: Names of the sources whose unswapped samples get the teacher's term (empty: every one).
    distill_sources: tuple[str, ...] = ()

    device: str = "auto"
    seed: int = 42
    #: ``None``: 0 on CPU (loading is ~3% of model time; workers would take its cores).
    num_workers: int | None = None
    pin_memory: bool | None = None
    #: Mixed precision (float16 on CUDA, bfloat16 on the CPU) and channels-last memory
    #: layout: ``None`` means on for CUDA and CPUs that compute bfloat16 natively.
    amp: bool | None = None
    channels_last: bool | None = None

    #: Caps for smoke runs and tests (``None``: the whole split / epoch).
    max_steps_per_epoch: int | None = None
    train_limit: int | None = None
    val_limit: int | None = None
    #: Probability threshold for IoU/Dice/pixel accuracy.
    threshold: float = 0.5
    #: Score ``best_model.pth`` at the original image resolution at the end of ``fit``.
    final_evaluation: bool = True
    # Which COCO person annotations become training targets.
    min_area: float = 0.0
    crowd: str = "ignore"

    # Model (unetbg.model.ModelConfig) and loss (unetbg.model.CompositeLoss).
    encoder: str = "resnet34"
    encoder_weights: str | None = "imagenet"
    attention: str | None = "gate"
    reconstruction: bool = False
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    recon_weight: float = 0.0

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    def sources(self) -> list[DataSource]:
        """``coco_root`` (weight 1) and every ``data`` spec, as :class:`DataSource`."""
        from unetbg.data.sources import DataSource

        first = [DataSource("coco", self.coco_root)] if self.coco_root else []
        return first + [DataSource.parse(spec) for spec in self.data]

    def with_absolute_paths(self) -> TrainConfig:
        """The same config with every data path absolute (relative to this process's cwd),
        as it must be before it crosses into a worker or a run folder."""
        return replace(
            self,
            coco_root=os.path.abspath(self.coco_root) if self.coco_root else None,
            init_weights=_absolute_weights(self.init_weights),
            distill_from=_absolute_weights(self.distill_from),
            data=tuple(s.spec() for s in self.sources()[1 if self.coco_root else 0 :]),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (listing the valid ones)."""
        _check_fields(data)
        return cls(**_coerce(data))

    def for_device(
        self, device_type: str, cpu_count: int | None = None, native_bf16: bool = False
    ) -> TrainConfig:
        """Fill the device-dependent ``None`` fields for ``device_type`` ("cpu" or "cuda")."""
        cuda = device_type == "cuda"
        cpus = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
        fast = cuda or native_bf16
        return replace(
            self,
            num_workers=self.num_workers
            if self.num_workers is not None
            else (min(8, cpus) if cuda else 0),
            pin_memory=self.pin_memory if self.pin_memory is not None else cuda,
            amp=self.amp if self.amp is not None else fast,
            channels_last=self.channels_last if self.channels_last is not None else fast,
        )


def _type_problems(cfg: TrainConfig):
    for name, hint in field_types().items():
        value = getattr(cfg, name)
        if typing.get_origin(hint) is tuple:
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                yield f"{name} must be a tuple of strings, got {value!r}"
            continue
        allowed = typing.get_args(hint) or (hint,)
        # bool is an int subclass: refuse True where a number is expected.
        ok = any(
            (value is None and t is type(None))
            or (t is bool and isinstance(value, bool))
            or (
                t is not bool
                and t is not type(None)
                and isinstance(value, t)
                and not isinstance(value, bool)
            )
            or (t is float and isinstance(value, int) and not isinstance(value, bool))
            for t in allowed
        )
        if not ok:
            yield f"{name} must be {_type_name(hint)}, got {value!r}"


def _type_name(hint: Any) -> str:
    names = [getattr(t, "__name__", str(t)) for t in (typing.get_args(hint) or (hint,))]
    return " or ".join("None" if n == "NoneType" else n for n in names)


def _problems(cfg: TrainConfig):
    type_problems = list(_type_problems(cfg))
    if type_problems:
        yield from type_problems
        return
    positive = ("epochs", "batch_size", "image_size")
    for name in positive:
        if getattr(cfg, name) < 1:
            yield f"{name} must be >= 1, got {getattr(cfg, name)}"
    if cfg.image_size % 32:
        yield f"image_size must be a multiple of 32, got {cfg.image_size}"
    if not cfg.lr > 0:
        yield f"lr must be > 0, got {cfg.lr}"
    if cfg.weight_decay < 0:
        yield f"weight_decay must be >= 0, got {cfg.weight_decay}"
    if not 0 <= cfg.warmup_fraction < 1:
        yield f"warmup_fraction must be in [0, 1), got {cfg.warmup_fraction}"
    if not 0 <= cfg.min_lr_ratio <= 1:
        yield f"min_lr_ratio must be in [0, 1], got {cfg.min_lr_ratio}"
    if cfg.grad_clip is not None and not cfg.grad_clip > 0:
        yield f"grad_clip must be > 0 or None, got {cfg.grad_clip}"
    for name in ("patience", "max_steps_per_epoch", "train_limit", "val_limit"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            yield f"{name} must be >= 1 or None, got {value}"
    if cfg.num_workers is not None and cfg.num_workers < 0:
        yield f"num_workers must be >= 0, got {cfg.num_workers}"
    if not 0 < cfg.threshold < 1:
        yield f"threshold must be in (0, 1), got {cfg.threshold}"
    if cfg.optimizer not in OPTIMIZERS:
        yield f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {cfg.optimizer!r}"
    if cfg.scheduler not in SCHEDULERS:
        yield f"scheduler must be one of {', '.join(SCHEDULERS)}, got {cfg.scheduler!r}"
    if cfg.crowd not in CROWD_MODES:
        yield f"crowd must be one of {', '.join(CROWD_MODES)}, got {cfg.crowd!r}"
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        yield f"device must be auto, cpu, cuda or cuda:N, got {cfg.device!r}"
    if not 1 <= cfg.max_zoom <= 4:
        yield f"max_zoom must be in [1, 4], got {cfg.max_zoom}"
    if cfg.ema_decay is not None and not 0 < cfg.ema_decay < 1:
        yield f"ema_decay must be in (0, 1) or None, got {cfg.ema_decay}"
    yield from _data_problems(cfg)
    yield from _distill_problems(cfg)
    for name in ("bce_weight", "dice_weight", "recon_weight"):
        if getattr(cfg, name) < 0:
            yield f"{name} must be >= 0, got {getattr(cfg, name)}"
    if cfg.recon_weight > 0 and not cfg.reconstruction:
        yield "recon_weight > 0 needs reconstruction=True"


def _absolute_weights(spec: str | None) -> str | None:
    """A weights option with its path made absolute; ``default`` and ``None`` as they are."""
    return spec if spec in (None, "default") else os.path.abspath(spec)


def _distill_problems(cfg: TrainConfig):
    if cfg.distill_weight < 0:
        yield f"distill_weight must be >= 0, got {cfg.distill_weight}"
    if cfg.distill_sources and not cfg.distill_from:
        yield "distill_sources needs a teacher (distill_from)"


def _data_problems(cfg: TrainConfig):
    """How the sources mix: the validation share, per-epoch shares, the backdrop swap,
    and the source names that options refer to."""
    if not 0 <= cfg.val_percent <= 100:
        yield f"val_percent must be in [0, 100], got {cfg.val_percent}"
    if cfg.samples_per_epoch is not None and cfg.samples_per_epoch < 1:
        yield f"samples_per_epoch must be >= 1 or None, got {cfg.samples_per_epoch}"
    if not 0 <= cfg.copy_paste <= 1:
        yield f"copy_paste must be in [0, 1], got {cfg.copy_paste}"
    if not 0 <= cfg.empty_share <= 1:
        yield f"empty_share must be in [0, 1], got {cfg.empty_share}"
    if cfg.empty_share > 0 and not cfg.data:
        yield "empty_share needs sources given with data (--data)"
    if cfg.copy_paste_max < 1:
        yield f"copy_paste_max must be >= 1, got {cfg.copy_paste_max}"
    if cfg.augment_range not in AUGMENT_RANGES:
        yield f"augment_range must be one of {', '.join(AUGMENT_RANGES)}, got {cfg.augment_range!r}"
    if not 0 <= cfg.background_swap <= 1:
        yield f"background_swap must be in [0, 1], got {cfg.background_swap}"
    if not 0 <= cfg.swap_close_ups <= 1:
        yield f"swap_close_ups must be in [0, 1], got {cfg.swap_close_ups}"
    if cfg.background_swap > 0 and not cfg.data:
        yield "background_swap needs sources given with data (--data)"
    if not 0 <= cfg.swap_hard_cases <= 1:
        yield f"swap_hard_cases must be in [0, 1], got {cfg.swap_hard_cases}"
    if cfg.swap_hard_cases > 0 and cfg.background_swap == 0:
        yield "swap_hard_cases needs background_swap > 0 (they are drawn on swapped samples)"
    if cfg.swap_objects and cfg.background_swap == 0:
        yield "swap_objects needs background_swap > 0 (the objects are laid on its backdrops)"
    sources = []
    for spec in cfg.data:
        try:
            sources.append(_parse_source(spec))
        except ValueError as exc:
            yield str(exc)
    if len(sources) < len(cfg.data):
        return  # the names below cannot be checked against specs that did not parse
    if cfg.partial_sources:
        yield from _named_source_problems(cfg, "partial_sources")
    if cfg.swap_sources:
        yield from _named_source_problems(cfg, "swap_sources")
    if cfg.distill_sources:
        yield from _named_source_problems(cfg, "distill_sources")
    if cfg.swap_objects and not any(s.kind == "coco" and s.weight > 0 for s in sources):
        yield "swap_objects needs a COCO source that trains (--data coco:ROOT[:WEIGHT])"


def _named_source_problems(cfg: TrainConfig, field: str):
    from unetbg.data.sources import unique_names

    if not cfg.data:  # a COCO-only run (coco_root alone) mixes no sources
        yield f"{field} needs sources given with data (--data)"
        return
    names = unique_names(cfg.sources())
    unknown = [n for n in getattr(cfg, field) if n not in names]
    if unknown:
        yield (
            f"{field} names no training source: {', '.join(unknown)}; "
            f"the sources are: {', '.join(names) or 'none (give --data)'}"
        )


def _parse_source(spec: str):
    from unetbg.data.sources import DataSource

    return DataSource.parse(spec)


def field_names() -> list[str]:
    """Names of every :class:`TrainConfig` field, in declaration order."""
    return [f.name for f in fields(TrainConfig)]


@functools.cache
def field_types() -> dict[str, Any]:
    """Resolved type hints of the fields (``from __future__`` leaves them as strings)."""
    hints = typing.get_type_hints(TrainConfig)
    return {name: hints[name] for name in field_names()}


def _check_fields(data: dict[str, Any]) -> None:
    unknown = sorted(set(data) - set(field_names()))
    if unknown:
        raise ValueError(
            f"unknown training config field(s): {', '.join(unknown)}; "
            f"valid fields: {', '.join(field_names())}"
        )


def _coerce(data: dict[str, Any]) -> dict[str, Any]:
    """Accept ints for float fields (JSON writes 1e-3 back as 0.001 but 1.0 as 1)."""
    types = field_types()
    out = {}
    for key, value in data.items():
        base = [t for t in typing.get_args(types[key]) if t is not type(None)] or [types[key]]
        if float in base and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if typing.get_origin(types[key]) is tuple and isinstance(value, list):
            value = tuple(value)  # JSON has no tuples
        out[key] = value
    return out


def resolve_config(preset: str = "balanced", /, **overrides: Any) -> TrainConfig:
    """The ``preset`` config with ``overrides`` applied (``None`` values are not skipped).

    Raises ``ValueError`` naming the valid presets or fields for unknown ones, and
    listing every invalid value at once.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    _check_fields(overrides)
    if "preset" in overrides and overrides["preset"] != preset:
        raise ValueError("'preset' cannot be overridden; pass it as the preset argument")
    return dataclasses.replace(PRESETS[preset], **_coerce(overrides))


#: The named presets. ``balanced`` equals the dataclass defaults.
PRESETS: dict[str, TrainConfig] = {
    "smoke": TrainConfig(
        preset="smoke",
        epochs=2,
        batch_size=4,
        lr=1e-3,
        image_size=96,
        patience=None,
        warmup_fraction=0.0,
        max_steps_per_epoch=4,
        val_limit=8,
        encoder_weights=None,
    ),
    "fast": TrainConfig(
        preset="fast", epochs=30, batch_size=32, lr=2e-4, image_size=256, patience=5
    ),
    "balanced": TrainConfig(),
    "quality": TrainConfig(
        preset="quality", epochs=200, batch_size=8, lr=5e-5, image_size=512, patience=20
    ),
    # The recipe of the shipped default model: every real person set under ../shared/data
    # (relative to the project root), from random weights on a 2-core CPU. See
    # docs/model-card.md for the ablations behind each choice.
    "cpu": TrainConfig(
        preset="cpu",
        data=(
            # coco-mini train: 44 of its 80 photos have nobody in them, as COCO val does.
            "coco:../shared/data/coco-mini:0.3",
            "masks:../shared/data/coco-person:1",
            "masks:../shared/data/ccp-person:0.35",
        ),
        # Photos without people kept whole: without them the model called any large
        # object in the middle (a pizza, a bear) a person. (--empty-share 0.2 on top did
        # not hold up past a few epochs and cost ccp-person: docs/model-card.md.)
        copy_paste_empty=False,
        epochs=30,
        samples_per_epoch=800,
        batch_size=8,
        lr=1e-3,
        weight_decay=1e-4,
        image_size=192,
        warmup_fraction=0.02,
        patience=None,
        encoder_weights=None,
        copy_paste=0.5,
        copy_paste_max=4,
        ema_decay=0.998,
        # amp and channels_last left to the CPU: bfloat16 gives ~1.9x the float32 steps/s
        # where the CPU computes it (AVX512-BF16, AMX), ~1/9 where it is emulated.
    ),
}
