"""The fixtures of the HTTP API tests: a module-wide embedded server (see api_server.py)
and the shared service fixtures (tests/service_fixtures.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_server import MAX_UPLOAD_BYTES, Server, serve, server_env

from service_fixtures import (  # noqa: F401  (fixtures used by the tests of this folder)
    checkpoint,
    cluster,
    redis_server,
)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    checkpoint: Path,  # noqa: F811  (the fixture imported above)
) -> Iterator[Server]:
    """An embedded-mode server (no broker; jobs run in it), chunks of 2 images."""
    folder = tmp_path_factory.mktemp("serve")
    env = server_env(folder / "data", UNETBG_CHUNK_SIZE="2")
    yield from serve(folder, checkpoint, env, "--max-upload-bytes", MAX_UPLOAD_BYTES)
