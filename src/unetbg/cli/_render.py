"""How job commands show jobs, items, epochs and checkpoints to people (tables, blocks).

Pure text from the service's ``*View`` snapshots; ``--json`` output is their ``to_dict()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart; ``None`` shows as ``-``."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def when(value: datetime | None) -> str | None:
    """Local time, to the second."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else None


def duration(seconds: float | None) -> str | None:
    """``m:ss`` or ``h:mm:ss``."""
    if seconds is None:
        return None
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def size_text(size: int | None) -> str:
    """Bytes for people: ``297.1 MiB``; ``missing`` for a file that is gone."""
    if size is None:
        return "missing"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def fmt(value: Any, digits: int = 4) -> Any:
    """A float with ``digits`` decimals; anything else as it is."""
    return f"{value:.{digits}f}" if isinstance(value, float) else value


def progress_text(job) -> str:
    """``done/total unit`` of a job."""
    unit = "epochs" if job.kind == "train" else "images" if job.kind == "remove_dir" else "steps"
    return f"{job.progress_done}/{job.progress_total} {unit}"


def describe(job) -> str:
    """The human-readable block `status` prints for one job."""
    rows = [
        ("job", job.id),
        ("kind", job.kind),
        (
            "state",
            job.state + ("  (cancel requested)" if job.cancel_requested and not job.final else ""),
        ),
        ("progress", progress_text(job)),
    ]
    if job.step_text:  # a training job inside its epoch
        rows.append(("step", job.step_text))
    if job.items:
        rows.append(("items", ", ".join(f"{n} {s}" for s, n in sorted(job.items.items()))))
    rows += [
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("run time", duration(job.seconds)),
        ("worker", job.worker_host),
        ("heartbeat", when(job.heartbeat_at)),
    ]
    if job.kind != "remove_dir":  # chunks are claimed independently; no job-wide attempt
        rows.append(("attempts", job.attempts))
    params = job.params
    if job.kind == "remove_dir":
        rows += [
            ("input", params.get("input_dir")),
            ("output", params.get("output_dir")),
            ("model", _model_text(params)),
            # What ran, once a chunk started: `auto` resolved by each worker.
            ("backend", ", ".join(params.get("backends", ())) or None),
            (
                "options",
                _options_text(params.get("options", {})),
            ),
        ]
    elif job.kind == "train":
        rows += [("preset", params.get("preset")), ("run dir", params.get("run_dir"))]
    else:
        rows += [("model", _model_text(params)), ("split", params.get("split"))]
    if job.error:
        rows.append(("error", job.error))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {'-' if v is None else v}" for k, v in rows)


def _model_text(params: dict[str, Any]) -> str | None:
    """The model a job runs, as recorded at submission: ``checkpoint 3 (/runs/…)`` or
    ``the default model (sha256 …, /…)``; a job recorded before says its path only."""
    from unetbg.jobs.checkpoints import describe_model

    return describe_model(params.get("model")) or params.get("checkpoint")


def _options_text(options: dict[str, Any]) -> str:
    shown = {k: v for k, v in options.items() if v is not None}
    if shown.get("kind") != "color":
        shown.pop("color", None)
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def result_lines(job) -> list[str]:
    """A finished evaluation's figures, or a training run's outcome."""
    result = job.result or {}
    if job.kind == "evaluate" and "iou" in result:
        return [
            f"{job.params.get('split')}: iou {result['iou']:.4f}  dice {result['dice']:.4f}  "
            f"pixel accuracy {result['pixel_accuracy']:.4f}  ({result.get('images')} images)"
        ]
    if job.kind == "train" and result:
        best = result.get("best_metrics") or {}
        line = f"training {result.get('status')} after {result.get('epochs_completed')} epochs"
        if best:
            line += f"; best epoch {result.get('best_epoch')}: val iou {best.get('iou', 0):.4f}"
        lines = [line]
        if result.get("best_checkpoint"):
            lines.append(f"best checkpoint: {result['best_checkpoint']}")
        else:  # cancelled (or stopped) before any epoch was validated
            lines.append("best checkpoint: none yet (no epoch was validated)")
        if result.get("status") == "cancelled" and result.get("last_checkpoint"):
            lines.append(
                f"last checkpoint: {result['last_checkpoint']} "
                f"(continue: unetbg submit-train --resume {job.id})"
            )
        return lines
    return []


def checkpoint_table(rows) -> str:
    """The registered checkpoints ``rows`` as a table."""
    return table(
        ("ID", "JOB", "EPOCH", "VAL IOU", "BEST", "SIZE", "CREATED", "SHA256", "PATH"),
        [
            (
                c.id,
                c.job_id,
                c.epoch,
                fmt(c.val_iou),
                "yes" if c.is_best else "",
                size_text(c.bytes),
                when(c.created_at),
                c.sha256[:12],
                c.path,
            )
            for c in rows
        ],
    )


def epoch_table(epochs) -> str:
    """A training job's per-epoch figures, one row per epoch (train and val side by side)."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for e in epochs:
        by_epoch.setdefault(e.epoch, {"lr": e.lr})[e.split] = e
    rows = []
    for epoch, entry in sorted(by_epoch.items()):
        train, val = entry.get("train"), entry.get("val")
        rows.append(
            (
                epoch,
                fmt(train and train.loss),
                fmt(train and train.iou),
                fmt(val and val.loss),
                fmt(val and val.iou),
                fmt(val and val.dice),
                f"{entry['lr']:.3g}" if entry["lr"] is not None else None,
            )
        )
    return table(
        ("EPOCH", "TRAIN LOSS", "TRAIN IOU", "VAL LOSS", "VAL IOU", "VAL DICE", "LR"), rows
    )


def item_table(items) -> str:
    """A remove-dir job's images: where each came from, its output or error, and
    ``no person`` where the output shows none."""
    if not items:
        return "(none)"
    return table(
        ("ID", "STATE", "SECONDS", "PERSON", "SOURCE", "OUTPUT / ERROR"),
        [
            (
                i.id,
                i.state,
                fmt(i.duration_s, 2),
                _person_text(i),
                i.source_path,
                i.error if i.state != "succeeded" else i.output_path,
            )
            for i in items
        ],
    )


def _person_text(item) -> str:
    """``no person`` (a flagged output), the person's share of the output, or blank."""
    if item.no_person:
        return "no person"
    return "" if item.person_share is None else f"{100 * item.person_share:.1f} %"


def no_person_line(job) -> str | None:
    """``N of M found no person (…)`` for a remove-dir job with such images, else ``None``."""
    if not job.no_person:
        return None
    written = job.items.get("succeeded", 0)
    return (
        f"{job.no_person} of {written} found no person (unetbg status {job.id} --items no-person)"
    )


def job_table(jobs) -> str:
    """Jobs, one row each: the ``unetbg jobs`` listing."""
    return table(
        ("ID", "KIND", "STATE", "PROGRESS", "CREATED", "RUN TIME", "NOTE"),
        [
            (
                j.id,
                j.kind,
                j.state,
                progress_text(j),
                when(j.created_at),
                duration(j.seconds),
                clip(j.error.splitlines()[0], NOTE_WIDTH) if j.error else None,
            )
            for j in jobs
        ],
    )


#: Widest NOTE of ``unetbg jobs`` (the width it always had), so one long error does not
#: wrap every row; ``unetbg status ID`` prints the whole error.
NOTE_WIDTH = 60


def clip(text: str, width: int) -> str:
    """``text``, or as many of its whole words as fit ``width`` characters with ``…``.

    Cut at a space so no word is left half (a cut ``connecting`` reads as another
    word); only a first word longer than ``width`` has to be cut inside.
    """
    if len(text) <= width:
        return text
    head = text[: width - 1]  # one character is left for the ellipsis
    space = head.rfind(" ")
    if not text[width - 1].isspace() and space > 0:
        head = head[:space]
    return head.rstrip(" ,;:") + "…"
