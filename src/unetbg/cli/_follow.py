"""Following a job from the command that submitted it (``--wait``, or always without a
broker): progress on stderr, the final summary, the exit status.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from unetbg.cli._render import describe, no_person_line, result_lines
from unetbg.cli._service import EXIT_OK, exit_code, service_errors


class _WaitDisplay:
    """A job's progress on stderr while waiting.

    On a terminal, a tqdm bar (throughput and ETA). Otherwise (a log file, a pipe, CI)
    plain lines: one per state change, and one per 10 % of progress or 10 s with progress,
    so a log is neither flooded with bar redraws nor silent for long.
    """

    EVERY_S = 10.0
    #: Seconds between two questions to the workers while a job stays queued.
    HINT_EVERY_S = 30.0

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
        self.line_step: str | None = None
        self.hinted: set[str] = set()
        self.hint_at = float("-inf")

    def update(self, view) -> None:
        """Show the snapshot ``view`` (called on every poll)."""
        self._hints(view)
        if self.bar.total != view.progress_total and view.progress_total:
            self.bar.total = view.progress_total
        if view.progress_done > self.done:
            self.bar.update(view.progress_done - self.done)
            self.done = view.progress_done
        postfix = view.state + (f", {view.step_text}" if view.step_text else "")
        self.bar.set_postfix_str(postfix, refresh=True)
        if not self.tty:
            self._line(view)

    def _hints(self, view) -> None:
        """While the job is queued, say once why it may wait (no worker for its queue);
        the workers are asked at most every :data:`HINT_EVERY_S` seconds."""
        from unetbg import jobs

        now = time.monotonic()
        if view.state != "queued" or now - self.hint_at < self.HINT_EVERY_S:
            return
        hints = jobs.waiting_hints(view)
        if hints or now - self.started >= jobs.QUEUE_HINT_AFTER_S:
            self.hint_at = now
        for hint in hints:
            if hint not in self.hinted:
                self.hinted.add(hint)
                self.bar.write(f"note: {hint}", file=sys.stderr)

    def _line(self, view) -> None:
        now = time.monotonic()
        moved = view.progress_done - self.line_done
        step = max(1, (view.progress_total or 0) // 10)
        stepped = view.step_text is not None and view.step_text != self.line_step
        if not (
            view.state != self.line_state
            or moved >= step
            or ((moved > 0 or stepped) and now - self.line_at >= self.EVERY_S)
        ):
            return
        text = f"{view.id}: {view.state} {view.progress_done}/{view.progress_total} {self.unit}"
        elapsed, gained = now - self.started, view.progress_done - self.first_done
        if gained > 0 and elapsed > 0:
            text += f", {gained / elapsed:.2f} {self.unit}/s"
        if view.step_text:
            text += f" ({view.step_text})"
        click.echo(text, err=True)
        self.line_state, self.line_done, self.line_at = view.state, view.progress_done, now
        self.line_step = view.step_text

    def close(self) -> None:
        """End the bar (a no-op without a terminal)."""
        self.bar.close()


def follow(job_id: str, runner: threading.Thread | None) -> Any:
    """Show the job's progress on stderr until it is final; return the final job, or
    ``None`` when Ctrl-C stopped the watching (with a broker, or attached to a job that
    another process runs: ``runner`` is ``None``, and the job goes on).

    ``runner`` is the thread running the job in embedded mode: Ctrl-C then cancels
    the job (it is this process's work), and if the thread dies first the service
    fails the job, saying so (:func:`unetbg.jobs.wait_for_run`; exit status 1),
    instead of waiting forever. Progress is polled from the database, so it keeps
    going across a broker restart.
    """
    from unetbg import jobs

    job = jobs.get_job(job_id)
    display = _WaitDisplay(job)
    try:
        while True:
            try:
                return jobs.wait_for_run(job_id, runner, on_update=display.update, poll_s=0.5)
            except KeyboardInterrupt:
                if runner is None:
                    display.close()
                    click.echo(
                        f"\nstopped watching; job {job_id} goes on "
                        f"(`unetbg status {job_id}`, `unetbg cancel {job_id}`)",
                        err=True,
                    )
                    return None
                click.echo(f"\ncancelling job {job_id} …", err=True)
                jobs.cancel_job(job_id)
    finally:
        display.close()
        if runner is not None:
            runner.join()


def wait_and_report(job_id: str, runner: threading.Thread | None, as_json: bool) -> int:
    """:func:`follow` the job, print the summary, return the exit code (0 when Ctrl-C
    stopped the watching of a job that goes on)."""
    job = follow(job_id, runner)
    if job is None:
        return EXIT_OK
    report(job, as_json)
    return exit_code(job.state)


def report(job, as_json: bool) -> None:
    """The final summary of a job (and its failed items, if any)."""
    from unetbg import jobs

    if as_json:
        click.echo(json.dumps(job.to_dict(), indent=2))
        return
    click.echo(describe(job), err=True)
    for line in result_lines(job):
        click.echo(line, err=True)
    if note := no_person_line(job):
        click.echo(note, err=True)
    if job.items.get("failed"):
        failed = jobs.list_items(job.id, ["failed"])
        for item in failed[:10]:
            click.echo(f"  failed: {item.source_path}: {item.error}", err=True)
        if len(failed) > 10:
            click.echo(
                f"  … and {len(failed) - 10} more: unetbg status {job.id} --items failed", err=True
            )


#: The ``--json`` option of the submitting commands.
JSON_HELP = (
    "Print the job as one JSON document on stdout: the final job (with --wait, or "
    "without a broker), else the job as queued. The id and notes go to stderr."
)


def _say_backend_if_run_here() -> None:
    """Without a broker this process loads the model: show which backend runs it on
    stderr, as ``remove`` does (workers log it)."""
    from unetbg.settings import get_settings

    if get_settings().embedded:
        from unetbg.inference import say_backend_choices

        say_backend_choices()


def submit_and_follow(job_id: str, wait: bool, as_json: bool) -> None:
    """Print the job id, start it, and (embedded, or with ``--wait``) follow it to the end.

    With ``as_json`` stdout holds exactly one JSON document (the job), and the id goes
    to stderr with the other notes.
    """
    from unetbg import jobs

    click.echo(job_id, err=as_json)
    _say_backend_if_run_here()
    runner = service_errors(lambda: jobs.start_job(job_id))
    if runner is None and not wait:
        if as_json:
            click.echo(json.dumps(jobs.get_job(job_id).to_dict(), indent=2))
        return
    if runner is not None and not wait:
        click.echo("no broker configured: running the job in this process", err=True)
    sys.exit(wait_and_report(job_id, runner, as_json))


def watch_and_report(watch: Callable[..., Any], as_json: bool) -> int:
    """Run ``watch(on_update=..., on_note=...)`` (``remove-dir --watch``, which returns
    the final job), showing progress as ``--wait`` does; print the summary, return the
    exit status. The job id is printed as soon as the job is recorded."""
    display: _WaitDisplay | None = None

    def update(view) -> None:
        nonlocal display
        if display is None:
            click.echo(view.id, err=as_json)
            display = _WaitDisplay(view)
        display.update(view)

    def note(line: str) -> None:
        if display is not None:
            display.bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    _say_backend_if_run_here()
    try:
        job = watch(on_update=update, on_note=note)
    finally:
        if display is not None:
            display.close()
    report(job, as_json)
    return exit_code(job.state)
