"""Training: ``TrainConfig`` and presets, the epoch engine, ``fit`` and checkpoint evaluation.

Names are loaded on first use so that ``unetbg.training.config`` (used to build CLI options)
can be imported without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TrainConfig": "config",
    "PRESETS": "config",
    "resolve_config": "config",
    "train_one_epoch": "engine",
    "evaluate": "engine",
    "fit": "fit",
    "FitResult": "fit",
    "evaluate_checkpoint": "evaluation",
    "EvaluationStopped": "evaluation",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
