"""Batched inference at any image size: letterbox, predict, map back to the original pixels."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unetbg.model.config import Preprocessing


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a ``torch.device``.

    ``"auto"`` picks the current CUDA device when one is available, else the CPU. Asking for CUDA
    without a usable GPU raises ``RuntimeError`` (no silent fallback to the CPU).
    """
    if isinstance(name, str) and name.strip().lower() == "auto":
        return (
            torch.device("cuda", torch.cuda.current_device())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {name!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise ValueError(f"unsupported device {name!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"device {str(name)!r} requested but no CUDA GPU is available to this torch "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False); "
            "use device 'cpu' or 'auto'"
        )
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise RuntimeError(
            f"device {str(name)!r} requested but only {torch.cuda.device_count()} CUDA "
            "device(s) are visible"
        )
    return torch.device("cuda", index)


def letterbox_geometry(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """Where an ``height×width`` image lands in a ``size×size`` letterbox.

    The long side is scaled to ``size`` keeping the aspect ratio (short side rounded, at least
    1 pixel) and the result is centred; the extra row/column of an odd padding goes to the
    bottom/right. Returns ``(new_h, new_w, pad_top, pad_left)``: the image occupies
    ``[pad_top:pad_top + new_h, pad_left:pad_left + new_w]``.
    """
    if height < 1 or width < 1 or size < 1:
        raise ValueError(f"sizes must be positive, got {height}×{width} into {size}")
    scale = size / max(height, width)
    new_h = min(size, max(1, round(height * scale)))
    new_w = min(size, max(1, round(width * scale)))
    return new_h, new_w, (size - new_h) // 2, (size - new_w) // 2


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    # Antialiasing only matters (and is only needed) when shrinking.
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def _check_image(index: int, image: object) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image {index}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image {index}: expected an H×W×3 uint8 RGB array, got {image.dtype} "
            f"with shape {image.shape}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image {index}: empty image with shape {image.shape}")
    return image


def predict_probabilities(
    model: nn.Module,
    images: Sequence[np.ndarray],
    preprocessing: Preprocessing,
    device: str | torch.device,
    batch_size: int = 8,
    channels_last: bool | None = None,
    amp: bool | None = None,
) -> list[np.ndarray]:
    """Person probability for each image, at the image's original size.

    ``images`` are ``H×W×3`` uint8 RGB arrays of any size (never modified). Each is letterboxed
    (``letterbox_geometry``: long side resized to ``preprocessing.image_size``, centred, padded
    with black before normalisation), batched by ``batch_size`` and run under
    ``torch.inference_mode``; the padding is cropped from the predicted probabilities, which are
    resized (bilinear) back to exactly ``H×W``. Returns ``H×W`` float32 arrays in [0, 1].

    ``device`` is resolved with ``resolve_device``; the model is moved there and, with
    ``channels_last`` (default ``True``, faster on CPU and for CUDA tensor cores), converted to
    channels-last memory format in place (values unchanged). ``amp`` (default: on for CUDA
    only) runs the network in float16 autocast. The model is run in eval mode and its previous
    training flag is restored.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    checked = [_check_image(i, image) for i, image in enumerate(images)]
    device = resolve_device(device)
    channels_last = True if channels_last is None else channels_last
    amp = device.type == "cuda" if amp is None else amp
    size = preprocessing.image_size
    mean = torch.tensor(preprocessing.mean, device=device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(preprocessing.std, device=device).view(1, 3, 1, 1) * 255.0
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    autocast = (
        torch.autocast(
            device_type=device.type,
            dtype=torch.float16 if device.type == "cuda" else torch.bfloat16,
        )
        if amp
        else contextlib.nullcontext()
    )

    was_training = model.training
    model.eval()
    results: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for start in range(0, len(checked), batch_size):
                chunk = checked[start : start + batch_size]
                pairs = [letterbox(image, size, mean, std, device) for image in chunk]
                batch = torch.stack([p[0] for p in pairs]).contiguous(memory_format=memory_format)
                with autocast:
                    logits = network_logits(lambda x: model(x)["mask"], batch, preprocessing)
                results.extend(restore_probabilities(logits, [p[1] for p in pairs]))
    finally:
        model.train(was_training)
    return results


def network_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    batch: torch.Tensor,
    preprocessing: Preprocessing,
) -> torch.Tensor:
    """``forward(batch)``, or when ``preprocessing`` asks for test-time flip the mean of
    it and the mirrored prediction of the mirrored batch (the averaging is on logits,
    before the sigmoid). Every path to the network goes through here, so the flip is
    decided in one place."""
    logits = forward(batch)
    if preprocessing.flip_average:
        mirrored = forward(torch.flip(batch, dims=[-1]))
        logits = (logits + torch.flip(mirrored, dims=[-1])) / 2
    return logits


#: Where a letterboxed image lies: ``(height, width, new_h, new_w, top, left)``.
Box = tuple[int, int, int, int, int, int]


def letterbox(
    image: np.ndarray,
    size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, Box]:
    """One ``H×W×3`` uint8 image as the network's normalised ``3×size×size`` input.

    The image is resized to fit (``letterbox_geometry``), centred on black and
    normalised with ``mean``/``std`` given in 0-255 units (shape ``3×1×1`` or
    ``1×3×1×1``). Returns the tensor and the box to undo it
    (:func:`restore_probabilities`). Used per image so that readers can letterbox
    ahead of the network (``unetbg.removal.pipeline``).
    """
    h, w = image.shape[:2]
    new_h, new_w, top, left = letterbox_geometry(h, w, size)
    canvas = torch.zeros(3, size, size, device=device)
    # torch.tensor copies, so read-only or non-contiguous inputs are fine.
    pixels = torch.tensor(image, device=device).permute(2, 0, 1)[None].float()
    canvas[:, top : top + new_h, left : left + new_w] = _resize(pixels, (new_h, new_w))[0]
    return (canvas - mean.view(3, 1, 1)) / std.view(3, 1, 1), (h, w, new_h, new_w, top, left)


def restore_probabilities(logits: torch.Tensor, boxes: Sequence[Box]) -> list[np.ndarray]:
    """``N×1×S×S`` mask logits -> each image's ``H×W`` float32 probability (crop, resize)."""
    probs = torch.sigmoid(logits.float())
    results = []
    for j, (h, w, new_h, new_w, top, left) in enumerate(boxes):
        crop = probs[j : j + 1, :, top : top + new_h, left : left + new_w]
        full = _resize(crop, (h, w)).clamp_(0.0, 1.0)
        results.append(full[0, 0].cpu().numpy().astype(np.float32, copy=False))
    return results
