"""Which model a command runs: ``--checkpoint`` (``best``, ``default``, a registered id,
a path) resolved to one file, with who it is and why it was chosen.

Every front door (the CLI, the HTTP API, the web page, job submission) asks
:func:`choose_checkpoint` and reports its :class:`ModelChoice`.

``best`` is the best model this installation has, the shipped default included. A
registered best checkpoint replaces the default only when its recorded validation IoU
beats the default's on the validation sets both were scored on: the default's figures
per set are read from its card (``card["evaluation"]["sources"]``, what ``unetbg
evaluate`` measured on the shipped file), a run's from the figures its training recorded
with the checkpoint (``NAME_iou`` per source; a COCO-only run's ``iou`` is its folder's).
A set is known by its name, the folder's name (``coco-mini``, ``ccp-person``). A
checkpoint with no set in common with the default cannot show that it is better, so the
default stays (``--checkpoint ID`` still picks it). A registered file that is gone is
skipped with a warning. With no default (``UNETBG_DEFAULT_MODEL=none``) the registered
checkpoint with the highest val IoU is ``best``, as before a model shipped.
"""

from __future__ import annotations

import functools
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from unetbg.db.models import Checkpoint
from unetbg.db.schema import SchemaOutOfDate
from unetbg.durable import file_sha256
from unetbg.jobs.errors import NoCheckpointError
from unetbg.jobs.queries import list_checkpoints
from unetbg.jobs.store import db_session
from unetbg.jobs.views import CheckpointView
from unetbg.settings import Settings, get_settings
from unetbg.weights import DEFAULT_SPEC, default_checkpoint

#: How many hex digits of a file's sha256 name it where it has no registered id.
SHA_PREFIX = 12
#: What names a model in an HTTP response (``/api/remove``).
MODEL_HEADER = "X-Unetbg-Model"


@dataclass(frozen=True)
class ModelChoice:
    """The checkpoint a request resolved to: its absolute ``path``, its registered
    ``checkpoint_id`` (``None`` for the default and unregistered files), whether it is the
    ``default`` model, ``reason`` (why ``best`` chose it; ``None`` when it was named) and
    ``warnings`` (registered files that are gone)."""

    path: str
    checkpoint_id: int | None = None
    default: bool = False
    reason: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``checkpoint 3``, ``the default model`` or ``checkpoint file``, for people."""
        if self.checkpoint_id is not None:
            return f"checkpoint {self.checkpoint_id}"
        return "the default model" if self.default else "checkpoint file"

    @property
    def sha256_prefix(self) -> str:
        """The first :data:`SHA_PREFIX` hex digits of the file's sha256 (as it is now)."""
        return file_digest(self.path)[:SHA_PREFIX]

    @property
    def ident(self) -> str:
        """``id=3`` for a registered checkpoint, ``sha256=…`` (a prefix) for any other."""
        if self.checkpoint_id is not None:
            return f"id={self.checkpoint_id}"
        return f"sha256={self.sha256_prefix}"

    def header(self) -> str:
        """The :data:`MODEL_HEADER` value: ``id=3 path=/runs/…`` or ``default sha256=…
        path=…``; the path percent-encoded where it is not plain ASCII (an HTTP header
        is Latin-1)."""
        default = "default " if self.default else ""
        return f"{default}{self.ident} path={quote(self.path, safe='/:@+,=')}"

    def notes(self) -> list[str]:
        """What a command tells people (stderr): the warnings, then why."""
        return [*self.warnings, *([self.reason] if self.reason else [])]

    def to_params(self) -> dict[str, Any]:
        """As a job records it (``params["model"]``) and ``status`` shows it."""
        return {
            "path": self.path,
            "id": self.checkpoint_id,
            "default": self.default,
            "sha256": file_digest(self.path),
            "reason": self.reason,
        }


def describe_model(model: dict[str, Any] | None) -> str | None:
    """One line for a job's recorded ``params["model"]``: ``checkpoint 3 (/runs/…)`` or
    ``the default model (sha256 …, /…/person.pth)``; ``None`` for jobs recorded before."""
    if not model or not model.get("path"):
        return None
    if model.get("id") is not None:
        return f"checkpoint {model['id']} ({model['path']})"
    who = "the default model" if model.get("default") else "checkpoint file"
    digest = str(model.get("sha256") or "")[:SHA_PREFIX]
    return f"{who} (sha256 {digest}, {model['path']})" if digest else f"{who} ({model['path']})"


def choose_checkpoint(spec: str, settings: Settings | None = None) -> ModelChoice:
    """The model that ``spec`` names: ``best``, ``default``, a registered id, or a path.

    Raises :class:`NoCheckpointError` with one sentence for people when there is none:
    no such id, no such file, a file that is not a checkpoint, no model at all.
    """
    settings = settings or get_settings()
    spec = str(spec).strip()
    if spec == "best":
        return _best(settings)
    if spec == DEFAULT_SPEC:
        return _default(settings, DEFAULT_SPEC)
    if spec.isdigit() and not Path(spec).exists():
        return _registered(int(spec), settings)
    path = Path(spec).expanduser()
    if not path.exists() and not path.is_absolute() and os.sep not in spec and "." not in spec:
        raise NoCheckpointError(
            f"no checkpoint {spec!r}: --checkpoint takes best, default, a registered "
            "checkpoint id (see `unetbg checkpoints`) or a checkpoint file's path"
        )
    resolved = _checked_file(path)
    return ModelChoice(
        str(resolved), _registered_id(resolved, settings), _is_default(resolved, settings)
    )


def resolve_checkpoint(spec: str, settings: Settings | None = None) -> str:
    """The absolute path of :func:`choose_checkpoint`'s choice."""
    return choose_checkpoint(spec, settings).path


def describe_checkpoint(path: str | os.PathLike, settings: Settings | None = None) -> str | None:
    """A note for people when ``path`` is the default model (``None`` otherwise)."""
    shipped = default_checkpoint(settings or get_settings())
    if shipped is None or Path(path).resolve() != shipped.resolve():
        return None
    return f"using the default model {shipped} (see docs/model-card.md)"


def best_checkpoint(settings: Settings | None = None) -> CheckpointView | None:
    """The registered best-model checkpoint with the highest validation IoU whose file is
    still there, if any (not necessarily ``best``: see :func:`choose_checkpoint`)."""
    return next(iter(_candidates(settings or get_settings())[0]), None)


def unregister_checkpoint(
    checkpoint_id: int, delete_file: bool = False, settings: Settings | None = None
) -> CheckpointView:
    """Forget registered checkpoint ``checkpoint_id`` (``unetbg checkpoints remove``);
    its file stays unless ``delete_file``. Returns what was registered."""
    settings = settings or get_settings()
    rows = {c.id: c for c in list_checkpoints(settings=settings)}
    if checkpoint_id not in rows:
        raise NoCheckpointError(
            f"no registered checkpoint with id {checkpoint_id} (see `unetbg checkpoints`)"
        )
    with db_session(settings) as session:
        session.execute(delete(Checkpoint).where(Checkpoint.id == checkpoint_id))
    if delete_file:
        Path(rows[checkpoint_id].path).unlink(missing_ok=True)
    return rows[checkpoint_id]


# ----------------------------------------------------------------------- the choices


def _best(settings: Settings) -> ModelChoice:
    """The registered checkpoint that beats the default, else the default (see the
    module's docstring); the first one registered when there is no default."""
    candidates, warnings = _candidates(settings)
    shipped = default_checkpoint(settings)
    if shipped is None:
        if not candidates:
            raise NoCheckpointError(_no_checkpoint_message("best", settings))
        top = candidates[0]
        reason = (
            f"using registered checkpoint {top.id} ({top.path}): the highest val IoU "
            f"({_fmt(top.val_iou)}); there is no default model to compare with"
        )
        return ModelChoice(top.path, top.id, reason=reason, warnings=warnings)
    theirs = default_scores(shipped)
    verdicts = [(c, _compare(c, theirs)) for c in candidates]
    for candidate, (wins, why) in verdicts:
        if wins:
            reason = f"using registered checkpoint {candidate.id} ({candidate.path}): {why}"
            return ModelChoice(candidate.path, candidate.id, reason=reason, warnings=warnings)
    default = _default(settings, "best")
    if not verdicts:
        why = "no trained checkpoint is registered"
    else:
        candidate, (_, why) = verdicts[0]
        more = f" (nor do {len(verdicts) - 1} other(s))" if len(verdicts) > 1 else ""
        why += f"{more}; `--checkpoint {candidate.id}` uses it anyway"
    reason = f"using the default model {default.path}: {why} (see docs/model-card.md)"
    return ModelChoice(default.path, default=True, reason=reason, warnings=warnings)


def _default(settings: Settings, spec: str) -> ModelChoice:
    shipped = default_checkpoint(settings)
    if shipped is None:
        raise NoCheckpointError(_no_checkpoint_message(spec, settings))
    if not shipped.is_file():
        raise NoCheckpointError(f"the default model's file is gone: {shipped}")
    reason = f"using the default model {shipped} (see docs/model-card.md)"
    return ModelChoice(str(shipped.resolve()), default=True, reason=reason)


def _registered(checkpoint_id: int, settings: Settings) -> ModelChoice:
    with db_session(settings) as session:
        row = session.get(Checkpoint, checkpoint_id)
        path = None if row is None else row.path
    if path is None:
        raise NoCheckpointError(
            f"no registered checkpoint with id {checkpoint_id} (see `unetbg checkpoints`)"
        )
    if not Path(path).is_file():
        raise NoCheckpointError(
            f"registered checkpoint {checkpoint_id}'s file is gone: {path} "
            f"(`unetbg checkpoints remove {checkpoint_id}` forgets it)"
        )
    return ModelChoice(str(_checked_file(Path(path))), checkpoint_id)


def _registered_id(path: Path, settings: Settings) -> int | None:
    """The id under which ``path`` is registered (the newest row), if it is. Only a
    name for reports: a file named by its path works without a usable job database."""
    try:
        with db_session(settings) as session:
            return session.scalars(
                select(Checkpoint.id)
                .where(Checkpoint.path == str(path))
                .order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
            ).first()
    except (SQLAlchemyError, SchemaOutOfDate):
        return None


def _candidates(settings: Settings) -> tuple[list[CheckpointView], tuple[str, ...]]:
    """Registered best checkpoints with a val IoU, highest first, whose files are there;
    and a warning for each whose file is gone."""
    rows = [c for c in list_checkpoints(settings=settings) if c.is_best and c.val_iou is not None]
    rows.sort(key=lambda c: (c.val_iou, c.created_at), reverse=True)
    present = [c for c in rows if Path(c.path).is_file()]
    warnings = tuple(
        f"warning: registered checkpoint {c.id}'s file is gone, skipped: {c.path} "
        f"(`unetbg checkpoints remove {c.id}` forgets it)"
        for c in rows
        if c not in present
    )
    return present, warnings


def _checked_file(path: Path) -> Path:
    """``path`` resolved, if it is a file that can be a checkpoint (a torch.save zip
    archive); the file is not loaded here."""
    resolved = path.expanduser().resolve()
    if not resolved.exists():
        raise NoCheckpointError(f"checkpoint file not found: {resolved}")
    if not resolved.is_file():
        raise NoCheckpointError(f"checkpoint {resolved} is a folder, not a checkpoint file")
    if not zipfile.is_zipfile(resolved):
        raise NoCheckpointError(
            f"refusing checkpoint {resolved}: not a checkpoint file (unetbg checkpoints are "
            ".pth files written by torch.save, e.g. a run's best_model.pth)"
        )
    return resolved


def _is_default(path: Path, settings: Settings) -> bool:
    shipped = default_checkpoint(settings)
    return shipped is not None and shipped.is_file() and shipped.resolve() == path


def _no_checkpoint_message(spec: str, settings: Settings) -> str:
    off = (settings.default_model or "").lower() == "none"
    reason = (
        "the default model is turned off (UNETBG_DEFAULT_MODEL=none)"
        if off
        else "this installation has no default model"
    )
    first = f"no trained checkpoint is registered yet and {reason}" if spec == "best" else reason
    return (
        f"{first}. Train one with `unetbg submit-train --preset smoke --coco-root DIR` "
        "(or `unetbg train`), or pass a checkpoint file with --checkpoint PATH"
    )


# ------------------------------------------------------------- comparing with the default


def _compare(candidate: CheckpointView, theirs: dict[str, float]) -> tuple[bool, str]:
    """Whether ``candidate`` beats the default (figures ``theirs`` per set), and why."""
    mine = checkpoint_scores(candidate.metrics, candidate.path)
    shared = sorted(set(mine) & set(theirs))
    if not theirs:
        return False, (
            f"registered checkpoint {candidate.id} cannot be compared with it: the default "
            "model's card records no validation figures"
        )
    if not shared:
        sets = ", ".join(sorted(mine)) or "no named validation set"
        return False, (
            f"registered checkpoint {candidate.id} was scored on {sets}, the default on "
            f"{', '.join(sorted(theirs))}: no common validation set to compare them"
        )
    ours = sum(mine[s] for s in shared) / len(shared)
    base = sum(theirs[s] for s in shared) / len(shared)
    on = ", ".join(shared)
    if ours > base:
        return True, f"val IoU {_fmt(ours)} on {on} beats the default model's {_fmt(base)}"
    return False, (
        f"registered checkpoint {candidate.id} scored val IoU {_fmt(ours)} on {on}, "
        f"the default {_fmt(base)}"
    )


def checkpoint_scores(metrics: dict[str, Any] | None, path: str | os.PathLike) -> dict[str, float]:
    """Validation IoU per set that training recorded (``metrics``) with the checkpoint at
    ``path``: ``NAME_iou`` for each source of a mixed run; a COCO-only run's ``iou``
    under its folder's name (read from the run's ``config.json`` beside the file)."""
    metrics = metrics or {}
    scores = {
        key[: -len("_iou")]: float(value)
        for key, value in metrics.items()
        if key.endswith("_iou") and key != "mean_iou" and _number(value)
    }
    if scores or not _number(metrics.get("iou")):
        return scores
    config = _run_config(Path(path).parent)
    if config.get("coco_root") and not config.get("data"):
        return {Path(config["coco_root"]).name: float(metrics["iou"])}
    return {}


def beats_default(
    metrics: dict[str, Any] | None, path: str | os.PathLike, settings: Settings | None = None
) -> bool | None:
    """Whether a checkpoint with these recorded ``metrics`` beats the default model as
    ``best`` judges (the mean IoU over the validation sets both were scored on); ``None``
    when that cannot be said: no default model, no figures on its card, no shared set."""
    shipped = default_checkpoint(settings or get_settings())
    if shipped is None or not shipped.is_file():
        return None
    theirs = default_scores(shipped)
    mine = checkpoint_scores(metrics, path)
    shared = set(mine) & set(theirs)
    if not shared:
        return None
    return sum(mine[s] for s in shared) > sum(theirs[s] for s in shared)


def default_scores(path: str | os.PathLike) -> dict[str, float]:
    """The default model's validation IoU per set, from its card (empty without one)."""
    stat = os.stat(path)
    return dict(_card_scores(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _card_scores(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, float], ...]:
    """Cached on the file's identity: the API and the web page ask on every request."""
    card = _read_card(path)
    evaluation = card.get("evaluation") or {}
    sources = evaluation.get("sources") or {}
    scores = {
        name: float(figures["iou"])
        for name, figures in sources.items()
        if isinstance(figures, dict) and _number(figures.get("iou"))
    }
    data = card.get("data") or []
    if not scores and len(data) == 1 and _number(evaluation.get("iou")):
        scores = {str(data[0].get("name")): float(evaluation["iou"])}
    return tuple(sorted(scores.items()))


def _read_card(path: str) -> dict[str, Any]:
    # torch only here, and the weights memory-mapped, not read: only the card is used.
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a file that cannot be read has no figures to compare
        return {}
    card = checkpoint.get("card") if isinstance(checkpoint, dict) else None
    return card if isinstance(card, dict) else {}


def _run_config(folder: Path) -> dict[str, Any]:
    import json

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


@functools.lru_cache(maxsize=32)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(path)


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of the file at ``path``, computed once per version of the file."""
    stat = os.stat(path)
    return _digest(str(path), stat.st_mtime_ns, stat.st_size)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}"
