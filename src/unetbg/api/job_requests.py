"""The JSON bodies of ``POST /api/jobs``, one per job kind, and how each becomes a job.

The fields are the CLI's options (``remove-dir``, ``submit-train``, ``submit-evaluate``)
with ``_`` for ``-``; remove-dir's output ``--kind`` is ``output_kind``, since ``kind``
names the job's. Every server-side path is checked against the roots before the job
service sees it, and the job is recorded with the resolved path that was checked.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from unetbg import jobs
from unetbg.api.config import ApiConfig
from unetbg.api.errors import ApiError
from unetbg.api.roots import checked_checkpoint, checked_path
from unetbg.removal import KindConflict, OutputOptions, RunOptions, output_options
from unetbg.removal.checks import Refused, check_checkpoint, check_device


class _RemoveDirFields(BaseModel):
    """``unetbg remove-dir INPUT_DIR OUTPUT_DIR``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["remove_dir"]
    input_dir: str
    output_dir: str
    checkpoint: str = "best"
    output_kind: Literal["cutout", "mask", "color", "background"] | None = None
    threshold: float | None = Field(None, ge=0, le=1)
    color: str | None = None
    background: str | None = None
    format: Literal["png", "webp", "jpeg", "jpg"] = "png"
    png_level: int | None = Field(None, ge=0, le=9)
    chunk_size: int | None = Field(None, ge=1)
    overwrite: bool = False
    follow_symlinks: bool = False

    def create(self, config: ApiConfig) -> str:
        roots = config.resolved_roots
        if self.follow_symlinks:
            raise ApiError(403, "follow_symlinks is refused: links may lead outside the API roots")
        input_dir = checked_path(self.input_dir, "input_dir", roots)
        output_dir = checked_path(self.output_dir, "output_dir", roots)
        background = self.background and str(checked_path(self.background, "background", roots))
        output = self._output_options(background)
        if not input_dir.is_dir():
            raise ApiError(400, f"input_dir {input_dir} is not a folder")
        checkpoint = _verified_checkpoint(self.checkpoint, config)
        run = RunOptions(**{name: getattr(self, name) for name in _RUN_FIELDS})
        return jobs.create_remove_dir_job(
            input_dir,
            output_dir,
            checkpoint,
            output=output,
            run=replace(run, device=_usable_device(run.device, config)),
            chunk_size=self.chunk_size,
            overwrite=self.overwrite,
            settings=config.settings,
        )

    def _output_options(self, background: str | None) -> OutputOptions:
        try:
            return output_options(
                self.output_kind,
                self.color,
                background or None,
                format=self.format,
                threshold=self.threshold,
                png_level=self.png_level,
            )
        except KindConflict as exc:
            raise ApiError(400, f"color needs output_kind color (got {exc.kind})") from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None


def _run_fields() -> dict[str, Any]:
    """:class:`RunOptions`' fields as body fields, with their CLI help and bounds."""
    hints = get_type_hints(RunOptions)
    return {
        f.name: (
            hints[f.name],
            Field(f.default, description=f.metadata.get("help"), ge=f.metadata.get("ge")),
        )
        for f in fields(RunOptions)
    }


_RUN_FIELDS = tuple(f.name for f in fields(RunOptions))
#: The body of a remove-dir job: its own fields and the model-run options (one list, in
#: :class:`unetbg.removal.RunOptions`).
RemoveDirJob = create_model(
    "RemoveDirJob",
    __base__=_RemoveDirFields,
    __doc__=_RemoveDirFields.__doc__,
    **_run_fields(),
)


class TrainJob(BaseModel):
    """``unetbg submit-train``: any other field is a ``TrainConfig`` override (``epochs``,
    ``lr``, …, as the CLI's ``--epochs``), checked by the job service."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["train"]
    preset: str = "balanced"
    coco_root: str | None = None
    data: list[str] = []
    device: str | None = None
    resume: str | None = None

    def create(self, config: ApiConfig) -> str:
        roots = config.resolved_roots
        overrides: dict[str, Any] = dict(self.model_extra or {})
        if self.device is not None:
            overrides["device"] = _usable_device(self.device, config)
        if self.resume is not None:
            if self.coco_root or self.data:
                raise ApiError(400, "resume continues a run with its own data: drop coco_root/data")
            resume = self.resume
            if "/" in resume or Path(resume).expanduser().exists():  # a run folder, not a job id
                resume = str(checked_path(resume, "resume", roots))
            return jobs.resume_train_job(resume, overrides, config.settings)
        if self.coco_root is not None:
            overrides["coco_root"] = str(checked_path(self.coco_root, "coco_root", roots))
        if self.data:
            overrides["data"] = tuple(_checked_source(spec, roots) for spec in self.data)
        weights = overrides.get("encoder_weights")
        if weights not in (None, "imagenet", "none"):  # a local file
            overrides["encoder_weights"] = str(checked_path(weights, "encoder_weights", roots))
        return jobs.create_train_job(self.preset, overrides, config.settings)


class EvaluateJob(BaseModel):
    """``unetbg submit-evaluate CHECKPOINT --coco-root DIR``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["evaluate"]
    checkpoint: str
    coco_root: str
    split: Literal["val", "train"] = "val"
    threshold: float = Field(0.5, gt=0, lt=1)
    limit: int | None = Field(None, ge=1)
    device: str = "auto"

    def create(self, config: ApiConfig) -> str:
        coco_root = checked_path(self.coco_root, "coco_root", config.resolved_roots)
        return jobs.create_evaluate_job(
            _verified_checkpoint(self.checkpoint, config),
            coco_root,
            self.split,
            threshold=self.threshold,
            limit=self.limit,
            device=_usable_device(self.device, config),
            settings=config.settings,
        )


JobRequest = Annotated[RemoveDirJob | TrainJob | EvaluateJob, Field(discriminator="kind")]


def _checked_source(spec: str, roots: tuple[Path, ...]) -> str:
    """A ``KIND:PATH[:WEIGHT]`` training source whose folder lies under the roots."""
    from unetbg.data.sources import DataSource

    try:
        source = DataSource.parse(spec)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    path = checked_path(source.path, f"data source {spec!r}", roots)
    return DataSource(source.kind, str(path), source.weight).spec()


def _verified_checkpoint(spec: str, config: ApiConfig) -> str:
    """The checkpoint's resolved path, loaded once here (nothing in it is executed) so an
    unsafe or corrupt file is refused before a job is recorded, as the CLI does."""
    path = jobs.resolve_checkpoint(checked_checkpoint(spec, config.resolved_roots), config.settings)
    try:
        return check_checkpoint(path)
    except Refused as exc:
        raise ApiError(400, str(exc)) from None


def _usable_device(device: str, config: ApiConfig) -> str:
    """Refuse a malformed device, and one this machine lacks when it would run the job."""
    note = " (no broker: this server would run the job)"
    try:
        return check_device(device, config.settings.embedded, note)
    except Refused as exc:
        raise ApiError(400, str(exc)) from None
