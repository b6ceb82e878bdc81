"""Helpers shared by the inference, removal and ``remove`` CLI tests.

A real (randomly initialised, not trained) checkpoint is written once per test session
with the model package's own ``build_checkpoint`` / ``save_checkpoint``, at a small
letterbox size so that CPU predictions stay fast. Its predictions carry no meaning;
tests check what the code does with them (sizes, alpha = probability, batching,
files), never what a trained model would find.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import astronaut

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
