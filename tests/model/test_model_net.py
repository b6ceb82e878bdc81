"""Architecture: shapes at any size, attention/reconstruction switches, registry errors."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from unetbg.model import (
    Attention,
    AttentionGate,
    ModelConfig,
    Preprocessing,
    count_flops,
    count_parameters,
    create_model,
)


@pytest.mark.parametrize("size", [(64, 64), (97, 131), (33, 50), (8, 8)])
def test_output_matches_any_input_size(small_model, size):
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = small_model(x)
    assert set(out) == {"mask", "reconstruction"}
    assert out["mask"].shape == (2, 1, *size)
    assert out["reconstruction"].shape == (2, 3, *size)
    assert torch.isfinite(out["mask"]).all()


def test_padding_is_reflect_and_cropped_back(small_model):
    # 40×50 is padded to 64×64 by reflection; the result must equal running the model on the
    # reflect-padded input ourselves and cropping the top-left 40×50.
    x = torch.randn(1, 3, 40, 50)
    with torch.no_grad():
        out = small_model(x)["mask"]
        padded = torch.nn.functional.pad(x, (0, 14, 0, 24), mode="reflect")
        ref = small_model(padded)["mask"][..., :40, :50]
    torch.testing.assert_close(out, ref)


def test_reconstruction_and_attention_switches(small_model, small_config):
    without = create_model(replace(small_config, reconstruction=False, attention=None)).eval()
    x = torch.randn(1, 3, 64, 64) * 5
    with torch.no_grad():
        rec = small_model(x)["reconstruction"]
        assert set(without(x)) == {"mask"}
    assert rec.min() >= 0 and rec.max() <= 1
    assert without.reconstruction_head is None
    # Attention None: Identity everywhere, no gate parameters.
    assert not any(isinstance(m, AttentionGate) for m in without.modules())
    assert all(
        isinstance(m.attention, torch.nn.Identity)
        for m in without.modules()
        if isinstance(m, Attention)
    )
    # The gated model has one gate per skip connection, the input image included, and the
    # reconstruction head (one 3×3 conv from the last decoder channels to RGB).
    gates = [m for m in small_model.modules() if isinstance(m, AttentionGate)]
    assert len(gates) == 5
    head = small_config.decoder_channels[-1] * 3 * 9 + 3
    gate_params = sum(count_parameters(g) for g in gates)
    assert count_parameters(small_model) == count_parameters(without) + gate_params + head


def test_identity_attention_returns_skip_and_gate_scales_it():
    skip, gate = torch.randn(2, 8, 16, 16), torch.randn(2, 12, 8, 8)
    assert Attention(None, 8, 12)(skip, gate) is skip
    attention = AttentionGate(8, 12).eval()
    alpha = attention.coefficients(skip, gate)
    assert alpha.shape == (2, 1, 16, 16)
    assert (alpha > 0).all() and (alpha < 1).all()
    torch.testing.assert_close(attention(skip, gate), skip * alpha)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match=r"unknown attention 'se'.*'gate'"):
        create_model(ModelConfig(attention="se"))
    with pytest.raises(ValueError, match=r"unknown encoder 'resnet18'.*'resnet34'"):
        create_model(ModelConfig(encoder="resnet18"))
    with pytest.raises(ValueError, match="decoder_channels needs 5 entries"):
        create_model(ModelConfig(decoder_channels=(64, 32, 16)))


def test_bad_input_shape_is_rejected(small_model):
    with pytest.raises(ValueError, match=r"N×3×H×W"):
        small_model(torch.randn(1, 1, 64, 64))


def test_forward_and_backward_at_384():
    model = create_model(ModelConfig(attention="gate", reconstruction=True)).train()
    out = model(torch.randn(1, 3, 384, 384))
    (out["mask"].mean() + out["reconstruction"].mean()).backward()
    assert out["mask"].shape == (1, 1, 384, 384)
    for module in (model.encoder.conv1, model.decoder.blocks[0].attention.attention.psi):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0


def test_count_flops_scales_with_area():
    model = create_model(ModelConfig(attention=None)).train()
    small, large = count_flops(model, 32), count_flops(model, 64)
    # Convolutions dominate and scale with the pixel count.
    assert large == pytest.approx(4 * small, rel=0.01)
    assert count_flops(model, (32, 64)) == pytest.approx(2 * small, rel=0.01)
    assert model.training  # restored


def test_config_dict_round_trip():
    cfg = ModelConfig(encoder_weights="/w.pth", decoder_channels=[128, 64, 32, 16, 8])
    assert cfg.decoder_channels == (128, 64, 32, 16, 8)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({"encoderr": "resnet34"})
    pre = Preprocessing(image_size=256, mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    with pytest.raises(ValueError, match="std values must be > 0"):
        Preprocessing(std=(0.2, 0.0, 0.2))
