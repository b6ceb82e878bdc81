"""One removal request, whichever front door it came through (the CLI, the HTTP API,
the web page, a job's recorded params): :class:`RunOptions` (how the model runs),
:class:`RemovalRequest` (checkpoint + outputs + run options, as a job records them) and
:func:`output_options`, the one place the default output kind is chosen.

A new model-run option is a field of :class:`RunOptions` (with its ``help``): the CLI
flags, the JSON body of ``POST /api/jobs``, the job's params, the model cache key and
:class:`~unetbg.inference.ModelInference` all follow from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from unetbg.removal.outputs import OutputOptions

#: What can run the network (:mod:`unetbg.backends`; the CPU runtimes are extras).
#: ``auto``: the fastest one installed for the device, chosen where the model loads.
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
Backend = Literal["auto", "torch", "onnxruntime", "openvino"]
#: What a job recorded before ``auto`` existed ran, when its params name no backend.
RECORDED_BACKEND = "torch"

#: Images per forward pass of the HTTP API's removal queue, and what a job recorded before
#: the per-backend default ran with when its params name no batch size. A request that
#: names none now gets its backend's own (``unetbg.backends.default_batch_size``).
DEFAULT_BATCH_SIZE = 4


def _checkpoint_says(help: str, said: str) -> Any:
    """A tri-state switch of the checkpoint's preprocessing: ``None`` keeps what the
    checkpoint says. ``help`` is the CLI flag's and the API field's description; ``said``
    how a report names it when on (:func:`describe_run`)."""
    return field(default=None, metadata={"override": True, "help": help, "said": said})


@dataclass(frozen=True)
class RunOptions:
    """How the model runs: where, by what, how many images per forward pass, and the
    switches that override the checkpoint's preprocessing (``None``: as it says).

    ``device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether this machine has it is
    the pre-submit check's question, not this object's).
    """

    device: str = "auto"
    backend: Backend = "auto"
    #: ``None``: the backend's own batch size (chosen where the model loads).
    batch_size: int | None = field(default=None, metadata={"ge": 1})
    flip_average: bool | None = _checkpoint_says(
        "Also run each photo mirrored and average the two masks (twice the network "
        "time), or not. Default: what the checkpoint says.",
        "flip-averaged",
    )
    refine_edges: bool | None = _checkpoint_says(
        "Move the mask's outlines onto the photo's own edges (a guided filter at the "
        "photo's size, about 20 ms per megapixel), or not. Default: what the checkpoint says.",
        "edges refined",
    )
    alpha_curve: bool | None = _checkpoint_says(
        "Clear the faint alpha the model leaves on background it is sure of: alpha 0 up "
        "to a low probability, 1 from a high one, linear between (the checkpoint's points, "
        "else 0.1 and 0.9; the 0.5 cut, and so --threshold masks, stay the same), or give "
        "the raw soft alpha. Default: what the checkpoint says.",
        "alpha curve",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not self.device.strip():
            raise ValueError(
                f"device must be a name like 'auto', 'cpu' or 'cuda', got {self.device!r}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(
                f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}"
            )
        if self.batch_size is not None:
            if isinstance(self.batch_size, bool) or int(self.batch_size) < 1:
                raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
            object.__setattr__(self, "batch_size", int(self.batch_size))
        for name in self.override_names():
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be true, false or null, got {value!r}")

    @classmethod
    def switches(cls) -> tuple[tuple[str, str], ...]:
        """``(name, help)`` of each field that overrides the checkpoint's preprocessing."""
        return tuple(
            (f.name, f.metadata["help"]) for f in fields(cls) if f.metadata.get("override")
        )

    @classmethod
    def override_names(cls) -> tuple[str, ...]:
        """The fields that override the checkpoint's preprocessing, in order."""
        return tuple(name for name, _ in cls.switches())

    def checkpoint_overrides(self) -> dict[str, bool | None]:
        """For :meth:`unetbg.model.Preprocessing.overridden` (``None`` keeps its value)."""
        return {name: getattr(self, name) for name in self.override_names()}

    def model_key(self) -> tuple:
        """What makes a loaded model differ (the batch size does not: it is set per use)."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "batch_size")

    def to_params(self) -> dict[str, Any]:
        """These options as JSON, as a remove-dir job records them (top-level keys)."""
        return asdict(self)

    @classmethod
    def from_params(cls, stored: Mapping[str, Any]) -> RunOptions:
        """Inverse of :meth:`to_params`, from a job's params (other keys are ignored).
        A key missing from an older job keeps what it ran with then: torch, 4 images,
        ``None``."""
        given = {f.name: stored[f.name] for f in fields(cls) if f.name in stored}
        recorded = {"backend": RECORDED_BACKEND, "batch_size": DEFAULT_BATCH_SIZE}
        return cls(**recorded | given)

    @classmethod
    def take(cls, values: dict[str, Any], **defaults: Any) -> RunOptions:
        """Pop this object's fields out of ``values`` (a command's keyword arguments)."""
        given = {f.name: values.pop(f.name) for f in fields(cls) if f.name in values}
        return cls(**(defaults | given))


def describe_run(preprocessing: Any) -> str:
    """``", flip-averaged, edges refined"`` as the switches of ``preprocessing`` (an
    object or a mapping with them, e.g. an evaluation's result) are on; else ``""``."""

    def on(name: str) -> bool:
        if isinstance(preprocessing, Mapping):
            return bool(preprocessing.get(name))
        return bool(getattr(preprocessing, name))

    return "".join(
        f", {f.metadata['said']}"
        for f in fields(RunOptions)
        if f.metadata.get("override") and on(f.name)
    )


@dataclass(frozen=True)
class RemovalRequest:
    """A whole removal request: the checkpoint (a resolved path), what to write and how
    the model runs. :meth:`to_params` is the part of a remove-dir job's params it owns."""

    checkpoint: str
    output: OutputOptions = field(default_factory=OutputOptions)
    run: RunOptions = field(default_factory=RunOptions)

    def to_params(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "options": self.output.to_params()} | (
            self.run.to_params()
        )

    @classmethod
    def from_params(cls, stored: Mapping[str, Any]) -> RemovalRequest:
        """Inverse of :meth:`to_params`; jobs recorded before any run option still load."""
        return cls(
            str(stored["checkpoint"]),
            OutputOptions.from_params(stored["options"]),
            RunOptions.from_params(stored),
        )

    def with_run(self, **changes: Any) -> RemovalRequest:
        return replace(self, run=replace(self.run, **changes))


class KindConflict(ValueError):
    """A colour was given with an output kind other than ``color``."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"color needs kind color (got kind {kind})")
        self.kind = kind


def output_kind(kind: str | None, color: object = None, background: object = None) -> str:
    """The output kind of a request: as given, else ``background`` with a background
    image, ``color`` with a colour, else ``cutout``. A colour with another kind raises
    :class:`KindConflict` (each front door words it with its own option names)."""
    if kind is None:
        kind = "background" if background is not None else "color" if color else "cutout"
    if color and kind != "color":
        raise KindConflict(kind)
    return kind


def output_options(
    kind: str | None = None, color: object = None, background: object = None, **fields: Any
) -> OutputOptions:
    """:class:`OutputOptions` with the kind chosen by :func:`output_kind`; ``None`` for
    ``color``, ``background`` or any of ``fields`` keeps that field's default."""
    given = {k: v for k, v in fields.items() if v is not None}
    if color:
        given["color"] = color
    if background is not None:
        given["background"] = background
    return OutputOptions(kind=output_kind(kind, color, background), **given)
