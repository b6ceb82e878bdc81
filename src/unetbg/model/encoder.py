"""ResNet encoders returning the feature pyramid, and the encoder registry.

An encoder's ``forward(x)`` returns ``[x, f2, f4, f8, f16, f32]``: the input itself followed by
the features at strides 2, 4, 8, 16 and 32, with channel counts in ``out_channels``. The
decoder derives all its channel sizes from ``out_channels``, so adding an encoder means adding
one registry entry here.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet34_Weights
from torchvision.models.resnet import BasicBlock, ResNet

# torchvision's classifier keys; they are dropped when loading a full torchvision state_dict.
_CLASSIFIER_KEYS = ("fc.weight", "fc.bias")


class EncoderWeightsError(RuntimeError):
    """Encoder weights could not be obtained or do not fit the encoder."""


class ResNetEncoder(ResNet):
    """torchvision ResNet without its classifier, returning the feature pyramid.

    The module keeps torchvision's attribute names, so its ``state_dict`` keys are exactly a
    torchvision ResNet's keys minus ``fc.*``.
    """

    output_stride = 32

    def __init__(self, layers: list[int], out_channels: tuple[int, ...]) -> None:
        super().__init__(BasicBlock, layers)
        del self.fc
        del self.avgpool
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        """Return ``[x, stride-2, stride-4, stride-8, stride-16, stride-32]`` features."""
        f2 = self.relu(self.bn1(self.conv1(x)))
        f4 = self.layer1(self.maxpool(f2))
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        f32 = self.layer4(f16)
        return [x, f2, f4, f8, f16, f32]


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one registered encoder and fetch its ImageNet weights."""

    build: Callable[[], ResNetEncoder]
    imagenet_state_dict: Callable[[], Mapping[str, torch.Tensor]]


def _resnet34() -> ResNetEncoder:
    return ResNetEncoder([3, 4, 6, 3], out_channels=(3, 64, 64, 128, 256, 512))


def _resnet34_imagenet() -> Mapping[str, torch.Tensor]:
    return ResNet34_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)


ENCODERS: dict[str, EncoderSpec] = {
    "resnet34": EncoderSpec(build=_resnet34, imagenet_state_dict=_resnet34_imagenet),
}


def get_encoder(name: str, weights: str | os.PathLike[str] | None = None) -> ResNetEncoder:
    """Build the encoder registered as ``name`` and load ``weights``.

    ``weights``: ``None`` (random init), ``"imagenet"`` (torchvision's official weights,
    downloaded into the torch hub cache) or a local file holding a torchvision state_dict of the
    same architecture or one of our encoder state_dicts. Encoder keys are loaded strictly.
    Raises ``ValueError`` for an unknown name (listing the valid ones) and
    ``EncoderWeightsError`` when weights cannot be obtained or do not match.
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; valid encoders are {sorted(ENCODERS)}")
    spec = ENCODERS[name]
    encoder = spec.build()
    if weights is None:
        return encoder
    if weights == "imagenet":
        try:
            state = spec.imagenet_state_dict()
        except (OSError, RuntimeError, ValueError) as exc:
            # URLError/HTTPError/socket errors are OSErrors; a hash mismatch is a RuntimeError.
            raise EncoderWeightsError(
                f"could not download the ImageNet weights for {name!r} "
                f"({type(exc).__name__}: {exc}); when offline, pass a local weights file path "
                "instead (a torchvision state_dict saved with torch.save: encoder_weights in "
                "Python, --encoder-weights on the command line), or None/none for random init"
            ) from exc
        source = f"ImageNet weights for {name!r}"
    else:
        state = _read_state_dict(Path(weights))
        source = str(weights)
    _load_strict(encoder, state, name, source)
    return encoder


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise EncoderWeightsError(
            f"encoder_weights {str(path)!r} is neither None, 'imagenet' nor an existing file"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise EncoderWeightsError(
            f"{path}: cannot read encoder weights; expected a state_dict saved with torch.save "
            f"and loadable with weights_only=True ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise EncoderWeightsError(
            f"{path}: expected a state_dict (a dict of name -> tensor), got {type(state).__name__}"
        )
    return state


def _load_strict(
    encoder: nn.Module, state: Mapping[str, torch.Tensor], name: str, source: str
) -> None:
    state = dict(state)
    if all(k in state for k in _CLASSIFIER_KEYS):
        for key in _CLASSIFIER_KEYS:
            del state[key]
    expected = set(encoder.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise EncoderWeightsError(
            f"{source}: weights do not match the {name!r} encoder: "
            f"{len(missing)} missing key(s) {missing[:5]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:5]}"
        )
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise EncoderWeightsError(
            f"{source}: weights do not match the {name!r} encoder: {exc}"
        ) from exc
