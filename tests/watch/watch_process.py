"""The watching ``unetbg remove-dir --watch`` process the watch tests drive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from service_fixtures import STARTUP_S, VENV_BIN, stop_process, wait_until

#: Short, so the tests are quick; the default is 1.5 s.
SETTLE_S = 0.3


class Watcher:
    """A running ``unetbg remove-dir IN OUT --watch`` and its output files."""

    def __init__(
        self,
        folder: Path,
        source: Path | str,
        out: Path | str,
        model: Path,
        env: dict,
        options: tuple[str, ...] = ("--settle", str(SETTLE_S)),
    ) -> None:
        self.env, self.folder = env, folder
        self.stdout, self.stderr = folder / "watch.out", folder / "watch.err"
        argv = [str(VENV_BIN / "unetbg"), "remove-dir", str(source), str(out)]
        argv += ["--checkpoint", str(model), "--watch", *options]
        with open(self.stdout, "wb") as out_file, open(self.stderr, "wb") as err_file:
            self.proc = subprocess.Popen(
                argv,
                cwd=folder,
                env=env | {"OMP_NUM_THREADS": "1"},
                stdout=out_file,
                stderr=err_file,
                start_new_session=True,
            )
        try:
            wait_until(
                lambda: "watching " in self.log() or self.proc.poll() is not None,
                STARTUP_S,
                "watch",
            )
        except AssertionError:
            stop_process(self.proc)  # not yet handed to the fixture, which stops the others
            raise
        assert self.proc.poll() is None, self.log()
        self.job_id = self.stdout.read_text().split()[0]

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM, timeout: float = 90) -> int:
        """Send ``signum`` to the watching process only; its exit status."""
        os.kill(self.proc.pid, signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            raise AssertionError(f"still running after {signum}:\n{self.log()}") from None

    def status(self) -> dict:
        done = subprocess.run(
            [str(VENV_BIN / "unetbg"), "status", self.job_id, "--json", "--items", "all"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode in (0, 1), done.stderr
        # JSON Lines: the job's object, then one per item (gathered here as item_list).
        job, *items = map(json.loads, done.stdout.splitlines())
        return job | {"item_list": items}


def wait_for_file(path: Path, watcher: Watcher, timeout: float = STARTUP_S) -> None:
    """Wait for ``path`` while ``watcher`` runs: as long as a process is given to start,
    as the first output waits for the model's load (over 90 s on a loaded machine)."""
    wait_until(
        lambda: path.is_file() or watcher.proc.poll() is not None,
        timeout,
        f"{path.name}\n{watcher.log()}",
    )
    assert watcher.proc.poll() is None, watcher.log()


def settle_a_while() -> None:
    """Long enough for a second, unwanted queueing of a file to show."""
    time.sleep(10 * SETTLE_S)
