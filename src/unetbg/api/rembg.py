"""rembg's parameters on ``POST /api/remove``: honoured where we do the same thing,
refused (400, naming the parameter) where we do not, never silently dropped.

A rembg client sends its options as query parameters or form fields: ``om`` (only mask,
one of the route's own fields), ``bgc`` (``R,G,B,A`` background colour: our ``color``),
and ``model``, ``a``/``af``/``ab``/``ae`` (alpha matting), ``ppm`` (post-processing) and
``extras``, which have no counterpart here. A client that gets back a transparent
cut-out when it asked for a white background, or an image made by another model than
the one it named, has been misled; a 400 tells it at once. ``a=false`` and ``ppm=false``
ask for nothing and pass. Any other name the route does not declare is refused too, so
a misspelt option (``treshold``) is caught rather than ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from unetbg.api.errors import ApiError

_FALSE = ("", "0", "false", "no", "off")

#: rembg parameters with no counterpart here -> why, for the 400 answer.
UNSUPPORTED = {
    "model": "this server runs unetbg's own model, not rembg's; choose one with 'checkpoint' "
    "(best, default, a registered id)",
    "a": "alpha matting is not supported (the mask's soft edges are the model's own)",
    "af": "alpha matting is not supported",
    "ab": "alpha matting is not supported",
    "ae": "alpha matting is not supported",
    "ppm": "mask post-processing is not supported; 'threshold' makes a hard mask",
    "extras": "rembg's model extras are not supported",
}
#: rembg flags whose false value asks for nothing we do not do.
FLAGS = ("a", "ppm")


@dataclass(frozen=True)
class SentParameters:
    """Every parameter name a request sent (query and form, files included), and the
    text values (a form field wins over a query parameter of the same name)."""

    names: frozenset[str]
    values: dict[str, str]


async def rembg_parameters(request: Request) -> dict[str, str]:
    """A route dependency: the route's fields that rembg's parameters stand for
    (:func:`rembg_fields`), checked against the fields the route declares."""
    # FastAPI has parsed the form for the route's own fields already; Starlette hands
    # back that parsed form here.
    form = await request.form()
    values = dict(request.query_params) | {
        k: v for k, v in form.multi_items() if isinstance(v, str)
    }
    sent = SentParameters(frozenset(request.query_params) | frozenset(form), values)
    declared = frozenset(field.alias for field in request.scope["route"].dependant.body_params)
    return rembg_fields(sent, declared)


def rembg_fields(sent: SentParameters, declared: frozenset[str]) -> dict[str, str]:
    """The route's fields that rembg's parameters in ``sent`` stand for (``bgc`` ->
    ``color``); raises :class:`ApiError` (400) for a parameter that is neither
    ``declared`` by the route nor one of rembg's that we honour."""
    for name in sorted(sent.names - declared - {"bgc"}):
        value = sent.values.get(name, "")
        if name in FLAGS and value.strip().lower() in _FALSE:
            continue
        if name in UNSUPPORTED:
            raise ApiError(400, f"unsupported rembg parameter {name}={value}: {UNSUPPORTED[name]}")
        raise ApiError(
            400,
            f"unknown parameter {name!r}; /api/remove takes {', '.join(sorted(declared))} "
            "and rembg's bgc (docs/api.md)",
        )
    if "bgc" not in sent.values:
        return {}
    if sent.values.get("color"):
        raise ApiError(400, "give either color or rembg's bgc, not both")
    return {"color": _bgc_color(sent.values["bgc"])}


def _bgc_color(text: str) -> str:
    """rembg's ``R,G,B[,A]`` as a colour our options take; only an opaque one (A 255):
    our colour background is opaque, and rembg's with A 0 is our plain cut-out."""
    try:
        parts = [int(part) for part in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (3, 4) or not all(0 <= p <= 255 for p in parts):
        raise ApiError(400, f"bgc must be R,G,B,A with values 0-255 (rembg's form), got {text!r}")
    if len(parts) == 4 and parts[3] != 255:
        raise ApiError(
            400,
            f"bgc={text}: only an opaque background colour (A=255) is supported; "
            "leave bgc out for a transparent cut-out",
        )
    return "#{:02x}{:02x}{:02x}".format(*parts[:3])
