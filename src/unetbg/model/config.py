"""Model hyper-parameters and input preprocessing, stored inside every checkpoint.

Both are frozen dataclasses made only of plain values (str, int, float, bool, tuples) so that
``to_dict()`` output can be saved in a ``weights_only`` checkpoint and rebuilt with
``from_dict()`` on another machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


def _check_keys(cls: type, data: dict[str, Any]) -> None:
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} field(s) {unknown}; valid fields are {sorted(known)}"
        )


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the attention U-Net.

    ``encoder_weights`` is ``None`` (random init), ``"imagenet"`` (torchvision's official
    ResNet34 ImageNet weights) or a path to a local state_dict file. It is used only when the
    model is first built (``create_model``); loading a checkpoint ignores it.
    ``decoder_channels`` lists the output channels of the decoder blocks from the coarsest
    (stride 16) to the finest (full resolution); its length must equal the encoder depth (5).
    ``attention`` names the skip-connection attention (``"gate"`` or ``None``).
    ``reconstruction`` adds the person-only RGB reconstruction head.
    """

    encoder: str = "resnet34"
    encoder_weights: str | None = None
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    attention: str | None = "gate"
    reconstruction: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, str) or not self.encoder:
            raise ValueError(f"encoder must be a non-empty string, got {self.encoder!r}")
        if self.encoder_weights is not None and not isinstance(self.encoder_weights, str):
            raise ValueError(
                "encoder_weights must be None, 'imagenet' or a file path string, "
                f"got {self.encoder_weights!r}"
            )
        channels = tuple(self.decoder_channels)
        if not channels or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels
        ):
            raise ValueError(
                f"decoder_channels must be positive integers, got {self.decoder_channels!r}"
            )
        # Lists (e.g. from JSON) become tuples so the config stays hashable and frozen.
        object.__setattr__(self, "decoder_channels", channels)
        if self.attention is not None and not isinstance(self.attention, str):
            raise ValueError(f"attention must be a name or None, got {self.attention!r}")
        if not isinstance(self.reconstruction, bool):
            raise ValueError(f"reconstruction must be a bool, got {self.reconstruction!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (safe for ``weights_only`` checkpoints and JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from ``to_dict()`` output; unknown keys raise ``ValueError``."""
        _check_keys(cls, data)
        return cls(**data)


#: The alpha curve's points for a checkpoint that names none (``--alpha-curve``): from the
#: shipped model's predictions it clears most of the visible veil on the background (27 %
#: of coco-person val's background pixels → 9 %) and leaves every IoU as it was
#: (``benchmarks/alpha_curve.py``, docs/model-card.md).
STANDARD_ALPHA_CURVE = (0.1, 0.9)


@dataclass(frozen=True)
class Preprocessing:
    """How images are fed to the network: letterbox size and normalisation.

    Images are scaled to [0, 1], then normalised per channel with ``(x - mean) / std``.
    With ``flip_average`` the network also sees each image mirrored left to right and
    its two predictions are averaged (test-time flip): twice the network's time, for
    masks that do not depend on which way a photo faces (docs/model-card.md measures it).
    With ``refine_edges`` the probability, once back at the photo's size, is guided-
    filtered by the photo (:mod:`unetbg.edges`): outlines follow the photo's edges
    instead of the network's coarser pixels. ``edge_radius`` is the filter's radius in
    network pixels, ``edge_eps`` how much contrast counts as an edge. Last, with
    ``alpha_curve``, the alpha curve: a probability up to ``alpha_low`` becomes fully
    transparent, one from ``alpha_high`` fully opaque, linearly in between, so the
    background the model is sure of carries no faint veil while the soft edge stays soft;
    with ``alpha_low + alpha_high = 1`` the 0.5 cut is where it was. A checkpoint that
    names no points (0 and 1) gets :data:`STANDARD_ALPHA_CURVE` when the curve is asked
    for (:meth:`curve_points`).
    """

    image_size: int = 384
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    flip_average: bool = False
    refine_edges: bool = False
    edge_radius: float = 2.0
    edge_eps: float = 1e-3
    alpha_low: float = 0.0
    alpha_high: float = 1.0
    alpha_curve: bool = False

    def __post_init__(self) -> None:
        if (
            not isinstance(self.image_size, int)
            or isinstance(self.image_size, bool)
            or self.image_size < 32
        ):
            raise ValueError(f"image_size must be an integer >= 32, got {self.image_size!r}")
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"{name} must have 3 values (RGB), got {value!r}")
            object.__setattr__(self, name, value)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be > 0, got {self.std!r}")
        for name in ("flip_average", "refine_edges", "alpha_curve"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("edge_radius", "edge_eps"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 < value < float("inf")
            ):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        low, high = self.alpha_low, self.alpha_high
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
        if not numbers or not 0 <= low < high <= 1:
            raise ValueError(
                f"alpha_low and alpha_high must be numbers with 0 <= alpha_low < alpha_high "
                f"<= 1, got {low!r} and {high!r}"
            )
        object.__setattr__(self, "alpha_low", float(low))
        object.__setattr__(self, "alpha_high", float(high))

    def curve_points(self) -> tuple[float, float] | None:
        """``(low, high)`` of the alpha curve to apply, or None when it is off."""
        if not self.alpha_curve:
            return None
        given = (self.alpha_low, self.alpha_high)
        return STANDARD_ALPHA_CURVE if given == (0.0, 1.0) else given

    def overridden(self, **changes: Any) -> Preprocessing:
        """A copy with each field given a value other than ``None`` replaced (``None``:
        as the checkpoint says), e.g. ``overridden(flip_average=cli_flag)``."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (safe for ``weights_only`` checkpoints and JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Rebuild from ``to_dict()`` output; unknown keys raise ``ValueError``."""
        _check_keys(cls, data)
        if "alpha_curve" not in data:  # written before the switch: points given = on
            points = (data.get("alpha_low", 0.0), data.get("alpha_high", 1.0))
            data = {**data, "alpha_curve": tuple(points) != (0.0, 1.0)}
        return cls(**data)
