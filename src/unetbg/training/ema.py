"""An exponential moving average of a model's weights, for evaluation and the checkpoints.

At batch sizes of 4–8 on a CPU the raw weights jump from step to step and BatchNorm's
running statistics drift between train and eval mode; the average of the last few hundred
steps (weights and BatchNorm statistics alike) scores steadier and usually higher.
The decay ramps up from ``(1 + n) / (10 + n)`` so the first steps are not frozen into it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEma:
    """``ema.update(model)`` after each optimisation step; ``ema.module`` is the average."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        live = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.lerp_(live[name].detach(), 1 - decay)
            else:  # BatchNorm's num_batches_tracked
                value.copy_(live[name])

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
