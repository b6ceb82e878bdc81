"""The person model that ships inside the package: ``--checkpoint default``.

``person.pth`` holds fp16 weights with everything needed to use and trust them: model
config, preprocessing, the figures it scored, the command that trained it and the sha256
of each data source's manifest (which photos it saw). It loads with
``torch.load(weights_only=True)`` like any checkpoint; docs/model-card.md is its card.

``UNETBG_DEFAULT_MODEL`` points the default elsewhere (a path) or turns it off (``none``:
commands then need a registered or explicit checkpoint, as before a model shipped).
This module imports neither torch nor the rest of the package.
"""

from __future__ import annotations

from pathlib import Path

from unetbg.settings import Settings, get_settings

#: The one shipped model file; older versions live in git history only.
SHIPPED = Path(__file__).with_name("person.pth")
#: What ``--checkpoint`` calls it.
DEFAULT_SPEC = "default"


def default_checkpoint(settings: Settings | None = None) -> Path | None:
    """The default model's file, or ``None`` when there is none (or it is turned off)."""
    value = (settings or get_settings()).default_model
    if value is None:
        return SHIPPED if SHIPPED.is_file() else None
    if value.lower() == "none":
        return None
    return Path(value).expanduser().resolve()
