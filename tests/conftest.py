"""Shared fixtures: where the real COCO subset is, and a generated fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "data" / "coco-mini"


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    """The real COCO 2017 subset beside the checkout; skips (saying why) when absent."""
    if not (COCO_MINI / "annotations" / "instances_val2017.json").is_file():
        pytest.skip(f"real COCO subset not found at {COCO_MINI}")
    return COCO_MINI
