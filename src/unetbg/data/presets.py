"""Paired image + mask transforms (albumentations 2) for training and evaluation.

Every preset is called as ``preset(image, mask, ignore)`` with ``image`` ``H×W×3``
uint8 RGB and ``mask``/``ignore`` ``H×W`` uint8 in {0, 1}, and returns torch tensors:

- ``image``: ``3×S×S`` float32, normalised with the mean/std of
  :class:`unetbg.model.Preprocessing` (ImageNet statistics by default);
- ``raw``: ``3×S×S`` float32 in [0, 1], the same pixels before normalisation
  (the reconstruction target);
- ``mask`` and ``ignore``: ``1×S×S`` float32 in {0, 1}.

Masks go through exactly the same geometric operations as the image (nearest
neighbour), so they stay aligned. Pixels that are not image (letterbox padding,
areas outside a shifted crop) are set to ignore=1: they carry no label, and
``predict`` crops the padding away anyway.

Letterbox (``EvalPreset``): the longest side is resized to ``S`` (aspect kept), then
the image is padded with zeros to ``S×S``, *centred*: ``top = (S - h) // 2``,
``left = (S - w) // 2``, the odd pixel going to the bottom/right. This is the same
letterbox as :func:`unetbg.model.predict.predict_probabilities`.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch


def _default_norm(
    mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if mean is None or std is None:
        # Imported here so the model's constants stay the single source of truth.
        from unetbg.model import Preprocessing

        pre = Preprocessing()
        mean = pre.mean if mean is None else mean
        std = pre.std if std is None else std
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values each, std > 0; got {mean}, {std}")
    return mean, std


class _Preset:
    """Shared call logic: run the albumentations pipeline, then tensors + normalisation."""

    def __init__(
        self,
        size: int,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        seed: int | None,
    ) -> None:
        if int(size) < 32:
            raise ValueError(f"size must be at least 32 pixels; got {size}")
        self.size = int(size)
        self.mean, self.std = _default_norm(mean, std)
        self.transform = A.Compose(self._transforms(), seed=seed)
        self._mean_np = np.asarray(self.mean, np.float32).reshape(3, 1, 1)
        self._std_np = np.asarray(self.std, np.float32).reshape(3, 1, 1)
        self._seeded_worker: int | None = None

    def _transforms(self) -> list:
        raise NotImplementedError

    def _reseed_in_worker(self) -> None:
        # Forked DataLoader workers inherit one random state: without this every worker
        # would apply the same augmentations. Each worker gets torch's per-worker seed.
        info = torch.utils.data.get_worker_info()
        if info is not None and self._seeded_worker != info.id:
            self.transform.set_random_seed(info.seed % 2**32)
            self._seeded_worker = info.id

    def __call__(self, image: np.ndarray, mask: np.ndarray, ignore: np.ndarray) -> dict:
        """Transform one sample; see the module doc for the returned tensors."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be H×W×3 uint8; got {image.shape} {image.dtype}")
        if mask.shape != image.shape[:2] or ignore.shape != image.shape[:2]:
            raise ValueError(
                f"mask {mask.shape} and ignore {ignore.shape} must match the image {image.shape[:2]}"
            )
        self._reseed_in_worker()
        valid = np.ones(image.shape[:2], np.uint8)
        out = self.transform(image=image, masks=[mask, ignore, valid])
        # In numpy, not torch: these small element-wise steps run in the loading thread
        # beside the model, and torch's thread pool stalls on them when the cores are busy
        # (8 ms instead of 50 µs a step). The float32 arithmetic is the same.
        mask, ignore, valid = out["masks"]
        raw = np.ascontiguousarray(out["image"].transpose(2, 0, 1), dtype=np.float32) / 255.0
        return {
            "image": torch.from_numpy((raw - self._mean_np) / self._std_np),
            "raw": torch.from_numpy(raw),
            "mask": torch.from_numpy((mask > 0)[None].astype(np.float32)),
            "ignore": torch.from_numpy(((ignore > 0) | (valid == 0))[None].astype(np.float32)),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, mean={self.mean}, std={self.std})"


class EvalPreset(_Preset):
    """Deterministic letterbox to ``size×size`` (centred padding), then normalisation."""

    def __init__(
        self,
        size: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__(size, mean, std, seed=0)

    def _transforms(self) -> list:
        return letterbox(self.size)


def letterbox(size: int) -> list:
    """Longest side to ``size`` (area interpolation when shrinking), centred zero padding."""
    return [
        A.LongestMaxSize(max_size=size, interpolation=cv2.INTER_LINEAR, area_for_downscale="image"),
        A.PadIfNeeded(
            size, size, position="center", border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0
        ),
    ]


class TrainPreset(_Preset):
    """Random scale and crop around the letterbox, flip, colour/light jitter, mild blur/noise.

    Geometry: letterbox-sized image rescaled by a random factor in [0.75, ``max_zoom``], padded
    (at a random position) to at least ``size`` and randomly cropped to ``size×size`` —
    from "whole image with borders", like inference, to "zoomed on a part", plus
    a small rotation and a horizontal flip. Photometric: colour jitter, gamma, rare
    grayscale, mild Gaussian/motion blur and sensor noise. ``seed`` fixes the sequence.
    """

    def __init__(
        self,
        size: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int | None = None,
        max_zoom: float = 1.6,
        wide: bool = False,
    ) -> None:
        if max_zoom < 1:
            raise ValueError(f"max_zoom must be >= 1, got {max_zoom}")
        # Read by _transforms, which the base __init__ calls.
        self.max_zoom, self.wide = max_zoom, wide
        super().__init__(size, mean, std, seed=seed)

    def _transforms(self) -> list:
        s = self.size
        geometry = [
            A.LongestMaxSize(
                max_size=s, interpolation=cv2.INTER_LINEAR, area_for_downscale="image"
            ),
            A.RandomScale(
                scale_limit=(-0.25, self.max_zoom - 1), interpolation=cv2.INTER_LINEAR, p=0.8
            ),
            A.PadIfNeeded(
                s, s, position="random", border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0
            ),
            A.RandomCrop(s, s),
            A.Affine(rotate=(-10, 10), border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.3),
            A.HorizontalFlip(p=0.5),
        ]
        return geometry + (self._wide_extras() if self.wide else self._standard_colour())

    @staticmethod
    def _standard_colour() -> list:
        return [
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03, p=0.8),
            A.RandomGamma(gamma_limit=(80, 120), p=0.3),
            A.ToGray(p=0.05),
            A.OneOf(
                [A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 5))],
                p=0.2,
            ),
            A.GaussNoise(std_range=(0.01, 0.05), p=0.2),
        ]

    @staticmethod
    def _wide_extras() -> list:
        """Photos as users bring them: lying and tilted people, any colour cast, strong
        light changes, black and white, soft focus, grain and heavy JPEG compression."""
        return [
            A.Affine(
                rotate=(-90, 90), border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.08
            ),
            A.ColorJitter(brightness=0.45, contrast=0.45, saturation=0.6, hue=0.05, p=0.8),
            # The whole hue circle, rarely: a person is a person in any colour cast.
            A.HueSaturationValue(hue_shift_limit=180, sat_shift_limit=0, val_shift_limit=0, p=0.1),
            A.RandomGamma(gamma_limit=(70, 140), p=0.3),
            A.ToGray(p=0.1),
            A.OneOf(
                [A.GaussianBlur(blur_limit=(3, 7)), A.MotionBlur(blur_limit=(3, 7))],
                p=0.25,
            ),
            A.GaussNoise(std_range=(0.01, 0.08), p=0.25),
            A.ImageCompression(quality_range=(30, 95), p=0.3),
        ]
