"""unetbg: background removal around people with an attention U-Net.

``from unetbg import ModelInference`` is the high-level inference API. It is
imported lazily so that ``import unetbg`` (and the CLI's ``--help``) stays light.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["ModelInference", "__version__"]


def __getattr__(name: str):
    if name == "ModelInference":
        from unetbg.inference import ModelInference

        return ModelInference
    raise AttributeError(f"module 'unetbg' has no attribute {name!r}")
