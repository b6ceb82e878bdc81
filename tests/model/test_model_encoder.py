"""Encoder pyramid and weight loading (random, local file, ImageNet offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from unetbg.model import EncoderWeightsError, ModelConfig, create_model, get_encoder


def test_feature_pyramid_strides_and_channels():
    encoder = get_encoder("resnet34")
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        features = encoder(x)
    assert features[0] is x
    for feature, channels, stride in zip(
        features, encoder.out_channels, (1, 2, 4, 8, 16, 32), strict=True
    ):
        assert feature.shape == (1, channels, 64 // stride, 96 // stride)


def test_loads_a_torchvision_state_dict_from_a_path(tmp_path):
    reference = torchvision.models.resnet34()
    path = tmp_path / "resnet34.pth"
    torch.save(reference.state_dict(), path)
    model = create_model(ModelConfig(encoder_weights=str(path)))
    loaded = model.encoder.state_dict()
    for key, value in reference.state_dict().items():
        if key.startswith("fc."):
            assert key not in loaded
        else:
            assert torch.equal(loaded[key], value), key


def test_loads_our_own_encoder_state_dict(tmp_path):
    source = get_encoder("resnet34")
    path = tmp_path / "encoder.pth"
    torch.save(source.state_dict(), path)
    encoder = get_encoder("resnet34", path)
    torch.testing.assert_close(encoder.state_dict(), source.state_dict(), rtol=0, atol=0)


def test_mismatched_weights_give_a_clear_error(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(EncoderWeightsError, match=r"do not match the 'resnet34' encoder.*missing"):
        get_encoder("resnet34", path)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(EncoderWeightsError, match="neither None, 'imagenet' nor an existing file"):
        get_encoder("resnet34", tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(EncoderWeightsError, match="cannot read encoder weights"):
        get_encoder("resnet34", junk)


def test_imagenet_offline_asks_for_a_local_path(tmp_path, monkeypatch):
    # An empty hub cache and a proxy on a closed local port make the download fail
    # deterministically, whether or not this machine has network access.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(EncoderWeightsError, match="pass a local weights file path"):
        get_encoder("resnet34", "imagenet")
    cached = Path(tmp_path / "torch-home" / "hub" / "checkpoints")
    assert not cached.exists() or not any(cached.glob("resnet34*.pth"))
