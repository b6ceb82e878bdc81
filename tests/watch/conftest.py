"""Real services for the watch tests (tests/service_fixtures.py), and a fixture that
starts watching processes and stops them after the test."""

from __future__ import annotations

from pathlib import Path

import pytest
from watch_process import Watcher

from service_fixtures import (  # noqa: F401  (fixtures used by the tests of this folder)
    broker_env,
    checkpoint,
    cluster,
    embedded_env,
    redis_server,
    stop_process,
)


@pytest.fixture
def start_watch(tmp_path, checkpoint):  # noqa: F811 (the fixture imported above)
    """``start_watch(source, out, env)`` starts a watcher; every one is stopped after."""
    started: list[Watcher] = []

    def start(source: Path, out: Path, env: dict) -> Watcher:
        watcher = Watcher(tmp_path, source, out, checkpoint, env)
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        stop_process(watcher.proc)
