"""A real ``unetbg serve`` process on a free loopback port, and what tests send it.

The server runs the tests' small random-weight checkpoint (its cut-outs carry no
meaning: the tests check sizes, statuses, records and counts) with a fresh SQLite job
database in its own data dir. The session-wide fixtures come from tests/service_fixtures.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

from service_fixtures import STARTUP_S, VENV_BIN, free_port, stop_process, wait_until

#: The byte limit the module's server is started with: small, so a refused upload is cheap.
MAX_UPLOAD_BYTES = 400_000


@dataclass
class Server:
    """One ``unetbg serve`` process: where it listens, its key, roots and environment."""

    proc: subprocess.Popen
    url: str
    key: str
    root: Path
    env: dict[str, str]
    log: Path

    def client(self, key: str | None = "") -> httpx.Client:
        """A client sending ``key`` (default: the server's; ``None``: no header)."""
        key = self.key if key == "" else key
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def unetbg(self, *args: object) -> subprocess.CompletedProcess:
        """The ``unetbg`` CLI against the same database."""
        return subprocess.run(
            [str(VENV_BIN / "unetbg"), *map(str, args)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
    return env | {"UNETBG_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"} | extra


def start_server(folder: Path, env: dict[str, str], *args: object) -> subprocess.Popen:
    """``unetbg serve ARGS`` in its own process group, its output in ``folder/serve.log``."""
    with open(folder / "serve.log", "ab") as log:
        return subprocess.Popen(
            [str(VENV_BIN / "unetbg"), "serve", *map(str, args)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def serve(folder: Path, model: Path, env: dict[str, str], *args: object) -> Iterator[Server]:
    """Start a server with a root ``folder/root`` and the generated key; yield it ready."""
    root = folder / "root"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start_server(folder, env, "--port", port, "--root", root, "--checkpoint", model, *args)
    log = folder / "serve.log"
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, STARTUP_S, "unetbg serve to answer /healthz")
        key_file = Path(env["UNETBG_DATA_DIR"]) / "api-key"
        yield Server(proc, url, key_file.read_text().strip(), root, env, log)
    finally:
        stop_process(proc, timeout=40)
    # Every refusal the tests provoke is an answer, never a crash in the server.
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def _decodes(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
    except OSError:
        return False
    return True


def copy_jpegs(coco_root: Path, dest: Path, count: int) -> list[Path]:
    """``count`` real COCO val photos (or the generated fallback's) into ``dest``, cycling
    through them when there are fewer. Only photos that decode: the fallback holds a
    truncated JPEG on purpose, for the COCO checks."""
    sources = [p for p in sorted((coco_root / "val2017").glob("*.jpg")) if _decodes(p)]
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        target = dest / f"{i:03d}-{sources[i % len(sources)].name}"
        shutil.copyfile(sources[i % len(sources)], target)
        out.append(target)
    return out
