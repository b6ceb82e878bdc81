"""The ``TrainConfig`` field options shared by ``unetbg train`` and ``unetbg submit-train``.

One ``--option`` per field is generated from the dataclass, so every field can be
overridden and a new field needs no CLI change. Only options given on the command
line become overrides.
"""

from __future__ import annotations

import typing
from typing import Any

import click

from unetbg.training.config import field_types
from unetbg.training.field_help import FIELD_HELP

#: "none" typed for an optional field: set it to None explicitly.
NONE = object()
#: Fields set by each command's own options, never generated.
SPECIAL = frozenset({"preset", "coco_root", "device", "data"})


data_option = click.option(
    "--data",
    multiple=True,
    metavar="KIND:PATH[:WEIGHT]",
    help="Training source, repeatable: coco:DIR (a COCO 2017 folder; trains on train2017, "
    "validates on val2017) or masks:DIR (images/ + masks/ [+ ignore/]; about --val-percent "
    "% of the names, by hash, validate). WEIGHT is the source's share of each epoch "
    "(default 1). Replaces the preset's sources.",
)


class _OptionalType(click.ParamType):
    """A base type that also accepts the word ``none`` (meaning: set the field to None)."""

    def __init__(self, base: click.ParamType) -> None:
        self.base = base
        self.name = f"{base.name}|none"

    def convert(self, value: Any, param, ctx) -> Any:
        if value is NONE or (isinstance(value, str) and value.lower() == "none"):
            return NONE
        return self.base.convert(value, param, ctx)


def field_options(command):
    """Decorate ``command`` with one option per TrainConfig field (except :data:`SPECIAL`)."""
    bases = {int: click.INT, float: click.FLOAT, str: click.STRING}
    for name, hint in reversed(list(field_types().items())):
        if name in SPECIAL:
            continue
        flag = name.replace("_", "-")
        if typing.get_origin(hint) is tuple:  # a list of names: repeat the option
            command = click.option(
                f"--{flag}", name, multiple=True, metavar="NAME", help=FIELD_HELP[name]
            )(command)
            continue
        args = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
        optional = type(None) in typing.get_args(hint)
        base = args[0]
        if base is bool:
            decl = f"--{flag}/--no-{flag}"
            command = click.option(decl, name, default=None, help=FIELD_HELP[name])(command)
            continue
        param_type = _OptionalType(bases[base]) if optional else bases[base]
        command = click.option(
            f"--{flag}",
            name,
            type=param_type,
            default=None,
            help=FIELD_HELP[name] + (" 'none' unsets it." if optional else ""),
        )(command)
    return command


def field_overrides(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields given on the command line (``none`` as ``None``), as config overrides.

    A repeatable option not given is ``()`` and overrides nothing; given as ``none`` alone
    it sets the field to ``()``.
    """
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, tuple):
            if value:
                out[key] = () if [v.lower() for v in value] == ["none"] else value
        elif value is not None:
            out[key] = None if value is NONE else value
    return out
