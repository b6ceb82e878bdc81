"""predict_probabilities: letterbox geometry, original-size outputs, batching, devices."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from skimage import data as skdata
from torch import nn

from unetbg.model import Preprocessing, letterbox_geometry, predict_probabilities, resolve_device


class RedIsPerson(nn.Module):
    """A fixed rule, not a trained net: logits high where the normalised red channel is high.

    It makes the expected probability map known exactly, so misplaced letterbox crops or
    resizes show up as wrong pixels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        return {"mask": self.scale * x[:, :1]}


PRE = Preprocessing(image_size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def test_letterbox_geometry():
    assert letterbox_geometry(100, 200, 64) == (32, 64, 16, 0)
    assert letterbox_geometry(200, 100, 64) == (64, 32, 0, 16)
    assert letterbox_geometry(64, 64, 64) == (64, 64, 0, 0)
    assert letterbox_geometry(33, 100, 64) == (21, 64, 21, 0)
    assert letterbox_geometry(1, 1000, 64) == (1, 64, 31, 0)
    with pytest.raises(ValueError):
        letterbox_geometry(0, 5, 64)


@pytest.mark.parametrize("shape", [(50, 90), (120, 40), (37, 37), (20, 30)])
def test_probabilities_follow_the_image_at_its_original_size(shape):
    h, w = shape
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2, 0] = 255  # left half red: "person"
    original = image.copy()
    image.setflags(write=False)
    (probs,) = predict_probabilities(RedIsPerson(), [image], PRE, "cpu")
    assert probs.shape == (h, w) and probs.dtype == np.float32
    assert np.array_equal(image, original)
    # Away from the boundary column (blurred by the two resizes) the answer is exact.
    margin = max(2, w // 10)
    assert probs[:, : w // 2 - margin].min() > 0.99
    assert probs[:, w // 2 + margin :].max() < 0.01


def test_batching_and_memory_format_do_not_change_results(small_model):
    # predict converts the model's memory format in place: work on a copy of the shared model.
    model = copy.deepcopy(small_model)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(40, 70), (66, 30), (64, 64)]
    ]
    model.train()
    one = predict_probabilities(model, images, PRE, "cpu", batch_size=1, channels_last=False)
    many = predict_probabilities(model, images, PRE, "cpu", batch_size=3)
    assert model.training  # eval during prediction, training flag restored after
    assert model.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for a, b, image in zip(one, many, images, strict=True):
        assert a.shape == image.shape[:2]
        np.testing.assert_allclose(a, b, atol=1e-4)
        assert a.min() >= 0 and a.max() <= 1


def test_real_photo_non_square(small_model):
    photo = skdata.astronaut()[:, 60:400]  # 512×340 real RGB photo
    (probs,) = predict_probabilities(small_model, [photo], PRE, "cpu", channels_last=False)
    assert probs.shape == (512, 340)
    assert np.isfinite(probs).all()


def test_bad_images_are_rejected():
    with pytest.raises(ValueError, match=r"image 1: expected an H×W×3 uint8"):
        predict_probabilities(
            RedIsPerson(), [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4))], PRE, "cpu"
        )
    with pytest.raises(TypeError, match="image 0: expected a numpy array"):
        predict_probabilities(RedIsPerson(), [[1, 2, 3]], PRE, "cpu")
    assert predict_probabilities(RedIsPerson(), [], PRE, "cpu") == []


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="use 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device("gpu please")
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        for name in ("cuda", "cuda:1"):
            with pytest.raises(RuntimeError, match="no CUDA GPU is available"):
                resolve_device(name)


class LeftIsPerson(nn.Module):
    """Logits that rise from right to left: the opposite of mirror-symmetric."""

    def forward(self, x):
        ramp = torch.linspace(4.0, -4.0, x.shape[-1], device=x.device)
        return {"mask": ramp.expand(x.shape[0], 1, *x.shape[-2:]).clone()}


def test_flip_average_averages_the_mirrored_prediction():
    image = np.zeros((32, 64, 3), np.uint8)  # wider than tall: no padding left or right
    (plain,) = predict_probabilities(LeftIsPerson(), [image], PRE, "cpu")
    assert plain[:, 0].min() > 0.95 and plain[:, -1].max() < 0.05
    both = dataclasses.replace(PRE, flip_average=True)
    (flipped,) = predict_probabilities(LeftIsPerson(), [image], both, "cpu")
    # The ramp and its mirror cancel on the logits: 0.5 everywhere, not the mean of
    # two probabilities' tails only.
    np.testing.assert_allclose(flipped, 0.5, atol=1e-6)
    (red,) = predict_probabilities(RedIsPerson(), [skdata.astronaut()[:200]], both, "cpu")
    (red_plain,) = predict_probabilities(RedIsPerson(), [skdata.astronaut()[:200]], PRE, "cpu")
    # A pixel-wise rule sees each pixel the same mirrored: the mirrored prediction, put
    # back in place, is the plain one (a missing or doubled flip would misplace it).
    np.testing.assert_allclose(red, red_plain, atol=1e-5)


def test_preprocessing_flip_average_is_a_bool_and_old_checkpoints_lack_it():
    old = {"image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert Preprocessing.from_dict(old).flip_average is False
    with pytest.raises(ValueError, match="flip_average must be true or false, got 'yes'"):
        Preprocessing.from_dict(old | {"flip_average": "yes"})
