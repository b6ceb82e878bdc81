"""Helpers shared by the inference, removal and ``remove`` CLI tests.

A real (randomly initialised, not trained) checkpoint is written once per test session
with the model package's own ``build_checkpoint`` / ``save_checkpoint``, at a small
letterbox size so that CPU predictions stay fast. Its predictions carry no meaning;
tests check what the code does with them (sizes, alpha = probability, batching,
files), never what a trained model would find.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.data import astronaut
from torch import nn

from unetbg.model import ModelConfig, Preprocessing, build_checkpoint, create_model, save_checkpoint

IMAGE_SIZE = 64


def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the session's checkpoint (written on first use, shared by all modules)."""
    path = tmp_path_factory.getbasetemp() / "tiny-checkpoint" / "model.pth"
    if not path.exists():
        torch.manual_seed(0)
        config = ModelConfig(decoder_channels=(32, 16, 16, 8, 8))
        model = create_model(config)
        state = build_checkpoint(
            model, config, Preprocessing(image_size=IMAGE_SIZE), epoch=0, metrics={}
        )
        save_checkpoint(path, state)
    return path


def person_photo(width: int, height: int) -> np.ndarray:
    """A crop of skimage's astronaut photo (a real person), resized to ``width×height``."""
    return np.asarray(
        Image.fromarray(astronaut()).resize((width, height), Image.Resampling.BILINEAR)
    )


def write_photo(path: Path, width: int = 80, height: int = 60, **save: object) -> Path:
    """Write the person photo as a real file (format from the suffix unless ``format=``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(person_photo(width, height)).save(path, **save)
    return path


def coco_photos(coco_mini: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` real COCO val photos, as RGB arrays."""
    paths = sorted((coco_mini / "val2017").glob("*.jpg"))[:count]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def calibrated_model(config: ModelConfig, photos: list[np.ndarray], seed: int = 0) -> nn.Module:
    """A model whose batch norms hold real statistics (as after training), so folding
    them is not the identity: random affine parameters, running means and variances
    measured on real photos."""
    torch.manual_seed(seed)
    model = create_model(config)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batch
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    batch = torch.stack(
        [
            F.interpolate(torch.tensor(p).permute(2, 0, 1)[None].float() / 255.0, size=(96, 96))[0]
            for p in photos
        ]
    )
    model.train()
    with torch.no_grad():
        model((batch - 0.45) / 0.225)
    return model.eval()


def mask_iou(expected: list[np.ndarray], got: list[np.ndarray], threshold: float = 0.5) -> float:
    """IoU of the thresholded masks over all pixels of all images (1 when both empty)."""
    a = np.concatenate([e.ravel() >= threshold for e in expected])
    b = np.concatenate([g.ravel() >= threshold for g in got])
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def rewrite_as_constant(source: Path, target: Path, person: bool) -> Path:
    """Write ``source``'s checkpoint over ``target`` IN PLACE (same file, same path, as a
    training run saving ``best_model.pth`` again), its mask head biased so that every
    pixel is person (``person``) or none: the two versions' masks cannot be mistaken."""
    import io

    from unetbg.model import load_checkpoint

    state = load_checkpoint(source)
    state["state_dict"]["mask_head.bias"].fill_(40.0 if person else -40.0)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with open(target, "wb") as file:  # truncated and written: the same inode
        file.write(buffer.getvalue())
    return target


#: A COCO val photo without any person annotation (a street sign).
COCO_WITHOUT_PEOPLE = (
    Path(__file__).resolve().parents[2] / "shared/data/coco-mini/val2017/000000135561.jpg"
)


def photos_with_and_without_people(folder: Path) -> tuple[Path, list[str]]:
    """``folder`` with a photo of a person (the astronaut) and images without people (a
    flat grey image, and a real COCO street photo when the subset is beside the
    checkout); returns it and the names of those without."""
    write_photo(folder / "astronaut.jpg", 256, 256)
    Image.new("RGB", (160, 120), (128, 128, 128)).save(folder / "grey.png")
    without = ["grey.png"]
    if COCO_WITHOUT_PEOPLE.is_file():
        shutil.copy(COCO_WITHOUT_PEOPLE, folder / "street.jpg")
        without.append("street.jpg")
    return folder, without
