"""A real S3 API server on loopback for the object-storage tests: moto's server mode
(``moto_server``), started by the fixture on a free 127.0.0.1 port, as s3fs's own test
suite does. Every request crosses HTTP through botocore and s3fs exactly as against AWS;
nothing inside the test process is replaced.

Import the fixture into a test module (``from s3_fixtures import s3_server``).
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from prerequisites import unavailable
from service_fixtures import VENV_BIN, free_port, stop_process, wait_until


class S3Server:
    """One ``moto_server`` process; ``env`` is what a client needs to reach it."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = folder / "moto.log"
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            # moto accepts any key; real-looking values so botocore signs every request.
            "AWS_ACCESS_KEY_ID": "unetbg-test",
            "AWS_SECRET_ACCESS_KEY": "unetbg-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        executable = VENV_BIN / "moto_server"
        if not executable.exists():
            unavailable("moto's server is not installed (pip install -e '.[dev,s3]')")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(executable), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def answers() -> bool:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2):
                    return True
            except (urllib.error.URLError, OSError):
                return False

        wait_until(answers, 60, "moto_server to answer")

    def reset(self) -> None:
        """Forget every bucket and object (moto's own reset endpoint)."""
        request = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    yield server
    server.stop()
