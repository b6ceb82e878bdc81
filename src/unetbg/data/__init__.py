"""COCO person masks, albumentations presets and dataset checks.

Names are imported lazily so that ``unetbg.data.filters`` (and the CLI's option
parsing) can be used without loading torch or albumentations.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PersonFilter": "unetbg.data.filters",
    "CocoPersons": "unetbg.data.coco",
    "CocoStats": "unetbg.data.coco",
    "CocoError": "unetbg.data.coco",
    "UnreadableImageError": "unetbg.data.coco",
    "CocoPersonDataset": "unetbg.data.dataset",
    "TrainPreset": "unetbg.data.presets",
    "EvalPreset": "unetbg.data.presets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'unetbg.data' has no attribute {name!r}")
