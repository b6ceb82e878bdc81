"""``unetbg status``, ``jobs``, ``cancel`` and ``checkpoints``: the job records.

Thin wrappers over :mod:`unetbg.jobs`; tables for people, ``--json`` for scripts.
Also holds what ``remove-dir`` and ``submit-*`` share: waiting with a progress bar,
the final summary and the exit status.

Exit status: 0 done (or still queued/running), 1 the job failed, ended ``partial``
or was cancelled, 2 a usage error (unknown job, bad option, no checkpoint, …).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import click

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE = 0, 1, 2
#: Job states that make a command exit with 1.
BAD_STATES = ("failed", "partial", "cancelled")

EXIT_HELP = (
    "\b\nExit status: 0 done (or still queued/running), 1 the job failed, "
    "ended partial or was cancelled, 2 usage error."
)

#: For the listing commands (`jobs`, `checkpoints`), which report no job outcome.
LIST_EXIT_HELP = (
    "\b\nExit status: 0 listed (possibly nothing), 2 usage error "
    "(bad option, unknown job, database schema behind)."
)
#: `cancel` succeeds whatever state the job ends up in.
CANCEL_EXIT_HELP = (
    "\b\nExit status: 0 cancel requested, or the job had already finished "
    "(nothing to cancel), 2 usage error (unknown job, …)."
)


class RequestError(click.ClickException):
    """A request the job service refused (exit status 2, like a usage error)."""

    exit_code = EXIT_USAGE


def service_errors(fn: Callable[[], Any]) -> Any:
    """Run ``fn``, turning the service's refusals into :class:`RequestError`."""
    from unetbg.db.schema import SchemaOutOfDate
    from unetbg.jobs import JobError

    try:
        return fn()
    except (JobError, SchemaOutOfDate) as exc:
        raise RequestError(str(exc)) from None


def checkpoint_path(spec: str) -> str:
    """The absolute path of ``spec`` (``best``, a registered id, a path); exit status 2
    (:class:`RequestError`) when there is no such checkpoint. The file is not loaded."""
    from unetbg import jobs

    return service_errors(lambda: jobs.resolve_checkpoint(spec))


def verified_checkpoint(spec: str) -> str:
    """Resolve ``spec`` (``best``, an id, a path) and load it here, before any job is
    recorded: an unsafe or corrupt file is refused now (exit status 2) with the loader's
    reason, instead of failing every chunk on the workers. Returns the absolute path.
    """
    path = checkpoint_path(spec)
    # torch is imported only here, when a command really needs the file checked.
    from unetbg.model import CheckpointError, load_checkpoint

    try:
        load_checkpoint(path)  # weights_only=True: nothing in the file is executed
    except CheckpointError as exc:
        raise RequestError(f"refusing checkpoint {exc}") from None
    return path


def usable_device(device: str) -> str:
    """Refuse ``device`` now (exit status 2, nothing recorded) when it cannot work.

    A malformed name always; a device this machine lacks (``cuda`` without a GPU) only
    in embedded mode, where this process runs the job: with a broker, the workers'
    hardware decides, and a worker that cannot use it fails the job once, saying so.
    """
    # torch is imported only here, when a command really needs the device checked.
    from unetbg.model import resolve_device
    from unetbg.settings import get_settings

    try:
        resolve_device(device)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    except RuntimeError as exc:
        if get_settings().embedded:
            raise RequestError(f"{exc} (no broker: this process would run the job)") from None
    return device


def exit_code(state: str) -> int:
    """The exit status for a job that ended (or stands) in ``state``."""
    return EXIT_JOB_FAILED if state in BAD_STATES else EXIT_OK


# --------------------------------------------------------------------------- rendering


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart; ``None`` shows as ``-``."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _when(value: datetime | None) -> str | None:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else None


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _fmt(value: Any, digits: int = 4) -> Any:
    return f"{value:.{digits}f}" if isinstance(value, float) else value


def _progress(job) -> str:
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
        ("progress", _progress(job)),
    ]
    if job.items:
        rows.append(("items", ", ".join(f"{n} {s}" for s, n in sorted(job.items.items()))))
    rows += [
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("run time", _duration(job.seconds)),
        ("worker", job.worker_host),
        ("heartbeat", _when(job.heartbeat_at)),
    ]
    if job.kind != "remove_dir":  # chunks are claimed independently; no job-wide attempt
        rows.append(("attempts", job.attempts))
    params = job.params
    if job.kind == "remove_dir":
        rows += [
            ("input", params.get("input_dir")),
            ("output", params.get("output_dir")),
            ("checkpoint", params.get("checkpoint")),
            (
                "options",
                _options_text(params.get("options", {})),
            ),
        ]
    elif job.kind == "train":
        rows += [("preset", params.get("preset")), ("run dir", params.get("run_dir"))]
    else:
        rows += [("checkpoint", params.get("checkpoint")), ("split", params.get("split"))]
    if job.error:
        rows.append(("error", job.error))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {'-' if v is None else v}" for k, v in rows)


def _options_text(options: dict[str, Any]) -> str:
    shown = {k: v for k, v in options.items() if v is not None}
    if shown.get("kind") != "color":
        shown.pop("color", None)
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def _result_lines(job) -> list[str]:
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
        return [line, f"best checkpoint: {result.get('best_checkpoint')}"]
    return []


# ------------------------------------------------------------------------------ waiting


class _RunnerDied(Exception):
    """The embedded runner thread ended while its job was not final."""


class _Progress:
    """A job's progress on stderr while waiting.

    On a terminal, a tqdm bar (throughput and ETA). Otherwise (a log file, a pipe, CI)
    plain lines: one per state change, and one per 10 % of progress or 10 s with progress,
    so a log is neither flooded with bar redraws nor silent for long.
    """

    EVERY_S = 10.0

    def __init__(self, job) -> None:
        from tqdm import tqdm

        self.tty = sys.stderr.isatty()
        self.unit = {"train": "epoch", "remove_dir": "img"}.get(job.kind, "job")
        self.bar = tqdm(
            total=job.progress_total or None,
            unit=self.unit,
            desc=job.id,
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
            disable=not self.tty,
        )
        self.done = 0
        self.started, self.first_done = time.monotonic(), job.progress_done
        self.line_state, self.line_done, self.line_at = None, job.progress_done, self.started

    def update(self, view) -> None:
        """Show the snapshot ``view`` (called on every poll)."""
        if self.bar.total != view.progress_total and view.progress_total:
            self.bar.total = view.progress_total
        if view.progress_done > self.done:
            self.bar.update(view.progress_done - self.done)
            self.done = view.progress_done
        self.bar.set_postfix_str(view.state, refresh=True)
        if not self.tty:
            self._line(view)

    def _line(self, view) -> None:
        now = time.monotonic()
        moved = view.progress_done - self.line_done
        step = max(1, (view.progress_total or 0) // 10)
        if not (
            view.state != self.line_state
            or moved >= step
            or (moved > 0 and now - self.line_at >= self.EVERY_S)
        ):
            return
        text = f"{view.id}: {view.state} {view.progress_done}/{view.progress_total} {self.unit}"
        elapsed, gained = now - self.started, view.progress_done - self.first_done
        if gained > 0 and elapsed > 0:
            text += f", {gained / elapsed:.2f} {self.unit}/s"
        click.echo(text, err=True)
        self.line_state, self.line_done, self.line_at = view.state, view.progress_done, now

    def close(self) -> None:
        """End the bar (a no-op without a terminal)."""
        self.bar.close()


def wait_and_report(job_id: str, runner: threading.Thread | None, as_json: bool) -> int:
    """Show progress until the job is final, print the summary, return the exit code.

    ``runner`` is the thread running the job in embedded mode: Ctrl-C then cancels
    the job (it is this process's work), and if the thread ends while the job is not
    final (it died), the job is marked failed saying so (exit status 1) instead of
    waiting forever. With a broker Ctrl-C only stops watching. Progress is polled from
    the database, so it keeps going across a broker restart.
    """
    from unetbg import jobs

    job = jobs.get_job(job_id)
    progress = _Progress(job)

    def update(view) -> None:
        progress.update(view)
        if runner is not None and not view.final and not runner.is_alive():
            raise _RunnerDied

    try:
        while True:
            try:
                job = jobs.wait_for_job(job_id, on_update=update, poll_s=0.5)
                break
            except _RunnerDied:
                error = getattr(runner, "error", None) or "no error was recorded"
                # Only this process ran it (embedded): its running images are orphans too.
                jobs.fail_job(
                    job_id,
                    f"the job's runner in this process stopped before the job ended: {error}",
                    item_states=("pending", "running"),
                )
                job = jobs.get_job(job_id)
                break
            except KeyboardInterrupt:
                if runner is None:
                    progress.close()
                    click.echo(
                        f"\nstopped watching; job {job_id} goes on "
                        f"(`unetbg status {job_id}`, `unetbg cancel {job_id}`)",
                        err=True,
                    )
                    return EXIT_OK
                click.echo(f"\ncancelling job {job_id} …", err=True)
                jobs.cancel_job(job_id)
    finally:
        progress.close()
        if runner is not None:
            runner.join()
    report(job, as_json)
    return exit_code(job.state)


def report(job, as_json: bool) -> None:
    """The final summary of a job (and its failed items, if any)."""
    from unetbg import jobs

    if as_json:
        click.echo(json.dumps(job.to_dict(), indent=2))
        return
    click.echo(describe(job), err=True)
    for line in _result_lines(job):
        click.echo(line, err=True)
    if job.items.get("failed"):
        failed = jobs.list_items(job.id, ["failed"])
        for item in failed[:10]:
            click.echo(f"  failed: {item.source_path}: {item.error}", err=True)
        if len(failed) > 10:
            click.echo(
                f"  … and {len(failed) - 10} more: unetbg status {job.id} --items failed", err=True
            )


def start(job_id: str) -> threading.Thread | None:
    """Dispatch ``job_id``: enqueue (broker) or run in a thread of this process (embedded)."""
    from unetbg import jobs
    from unetbg.settings import get_settings

    settings = get_settings()
    if not settings.embedded:
        service_errors(lambda: jobs.dispatch(job_id, settings))
        return None

    def run() -> None:
        try:
            jobs.dispatch(job_id, settings)
        except BaseException as exc:
            # wait_and_report names it when it fails the job; the hook still logs it.
            runner.error = f"{type(exc).__name__}: {exc}"
            raise

    runner = threading.Thread(target=run, name=f"job-{job_id}")
    runner.start()
    return runner


def submit_and_follow(job_id: str, wait: bool, as_json: bool) -> None:
    """Print the job id, start it, and (embedded, or with ``--wait``) follow it to the end."""
    click.echo(job_id)
    runner = start(job_id)
    if runner is None and not wait:
        return
    if runner is not None and not wait:
        click.echo("no broker configured: running the job in this process", err=True)
    sys.exit(wait_and_report(job_id, runner, as_json))


# ----------------------------------------------------------------------------- commands


@click.command(epilog=EXIT_HELP)
@click.argument("job_id")
@click.option(
    "--items",
    "items",
    type=click.Choice(("failed", "all")),
    default=None,
    help="Also list the job's images: only the failed ones, or all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(job_id: str, items: str | None, as_json: bool) -> None:
    """Show one job (a unique prefix of its id is enough)."""
    from unetbg import jobs

    def load():
        jobs.mark_lost_jobs()
        job = jobs.get_job(job_id)
        listed = []
        if items:
            listed = jobs.list_items(job.id, ["failed"] if items == "failed" else None)
        epochs = jobs.list_epoch_metrics(job.id) if job.kind == "train" else []
        checkpoints = jobs.list_checkpoints(job.id) if job.kind == "train" else []
        return job, listed, epochs, checkpoints

    job, listed, epochs, checkpoints = service_errors(load)
    if as_json:
        out = job.to_dict()
        if items:
            out["item_list"] = [i.to_dict() for i in listed]
        if job.kind == "train":
            out["epochs"] = [e.to_dict() for e in epochs]
            out["checkpoints"] = [c.to_dict() for c in checkpoints]
        click.echo(json.dumps(out, indent=2))
        sys.exit(exit_code(job.state))
    click.echo(describe(job))
    for line in _result_lines(job):
        click.echo(line)
    if epochs:
        click.echo("\nepochs:")
        by_epoch: dict[int, dict[str, Any]] = {}
        for e in epochs:
            by_epoch.setdefault(e.epoch, {"lr": e.lr})[e.split] = e
        rows = []
        for epoch, entry in sorted(by_epoch.items()):
            train, val = entry.get("train"), entry.get("val")
            rows.append(
                (
                    epoch,
                    _fmt(train and train.loss),
                    _fmt(train and train.iou),
                    _fmt(val and val.loss),
                    _fmt(val and val.iou),
                    _fmt(val and val.dice),
                    f"{entry['lr']:.3g}" if entry["lr"] is not None else None,
                )
            )
        click.echo(
            table(
                ("EPOCH", "TRAIN LOSS", "TRAIN IOU", "VAL LOSS", "VAL IOU", "VAL DICE", "LR"), rows
            )
        )
    if checkpoints:
        click.echo("\ncheckpoints:")
        click.echo(_checkpoint_table(checkpoints))
    if items:
        click.echo(f"\n{items} items:")
        click.echo(
            table(
                ("ID", "STATE", "SECONDS", "SOURCE", "OUTPUT / ERROR"),
                [
                    (
                        i.id,
                        i.state,
                        _fmt(i.duration_s, 2),
                        i.source_path,
                        i.error if i.state != "succeeded" else i.output_path,
                    )
                    for i in listed
                ],
            )
            if listed
            else "(none)"
        )
    sys.exit(exit_code(job.state))


@click.command("jobs", epilog=LIST_EXIT_HELP)
@click.option(
    "--state",
    type=click.Choice(("queued", "running", "succeeded", "failed", "cancelled", "partial")),
    default=None,
    help="Only jobs in this state.",
)
@click.option(
    "--kind",
    type=click.Choice(("train", "remove_dir", "evaluate")),
    default=None,
    help="Only jobs of this kind.",
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def jobs(state: str | None, kind: str | None, limit: int, as_json: bool) -> None:
    """List recent jobs, newest first."""
    from unetbg import jobs as service

    def load():
        service.mark_lost_jobs()
        return service.list_jobs(state=state, kind=kind, limit=limit)

    rows = service_errors(load)
    if as_json:
        click.echo(json.dumps([j.to_dict() for j in rows], indent=2))
        return
    if not rows:
        click.echo("no jobs")
        return
    click.echo(
        table(
            ("ID", "KIND", "STATE", "PROGRESS", "CREATED", "RUN TIME", "NOTE"),
            [
                (
                    j.id,
                    j.kind,
                    j.state,
                    _progress(j),
                    _when(j.created_at),
                    _duration(j.seconds),
                    (j.error or "").splitlines()[0][:60] if j.error else None,
                )
                for j in rows
            ],
        )
    )


@click.command(epilog=CANCEL_EXIT_HELP)
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON afterwards.")
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job: queued work is dropped, running work stops at its next image or
    training step (training keeps its last checkpoint). Returns at once."""
    from unetbg import jobs

    job = service_errors(lambda: jobs.cancel_job(job_id))
    if as_json:
        click.echo(json.dumps(job.to_dict(), indent=2))
    elif job.final and not job.cancel_requested:
        click.echo(f"job {job.id} already finished ({job.state}); nothing to cancel")
    elif job.final:
        click.echo(f"job {job.id}: {job.state}")
    else:
        click.echo(
            f"job {job.id}: cancel requested; it stops at its next step (`unetbg status {job.id}`)"
        )


def _checkpoint_table(rows) -> str:
    return table(
        ("ID", "JOB", "EPOCH", "VAL IOU", "BEST", "CREATED", "SHA256", "PATH"),
        [
            (
                c.id,
                c.job_id,
                c.epoch,
                _fmt(c.val_iou),
                "yes" if c.is_best else "",
                _when(c.created_at),
                c.sha256[:12],
                c.path,
            )
            for c in rows
        ],
    )


@click.command(epilog=LIST_EXIT_HELP)
@click.option("--job", "job_id", default=None, help="Only this training job's checkpoints.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def checkpoints(job_id: str | None, as_json: bool) -> None:
    """List registered checkpoints (`--checkpoint best` picks the best val IoU)."""
    from unetbg import jobs

    rows = service_errors(lambda: jobs.list_checkpoints(job_id))
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in rows], indent=2))
    elif rows:
        click.echo(_checkpoint_table(rows))
    else:
        click.echo(
            "no checkpoints registered (train one: `unetbg submit-train --preset smoke --coco-root DIR`)"
        )
