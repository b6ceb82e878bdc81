"""Shared model fixtures: built once per session because a ResNet34 init takes a while on CPU."""

from __future__ import annotations

import pytest
import torch

from unetbg.model import ModelConfig, create_model


@pytest.fixture(scope="session")
def small_config() -> ModelConfig:
    """Gated model with reconstruction and a narrow decoder (cheap on a shared 2-core box)."""
    return ModelConfig(attention="gate", reconstruction=True, decoder_channels=(64, 32, 16, 16, 8))


@pytest.fixture(scope="session")
def small_model(small_config):
    """An eval-mode model built from ``small_config``; tests must not modify it."""
    torch.manual_seed(0)
    return create_model(small_config).eval()
