"""Real services for the job tests: Redis, a Celery worker, the SQLite job database,
real COCO photos and a real (random-weight) checkpoint.

They live in tests/service_fixtures.py, shared with tests/reliability/; importing the
fixtures here registers them for this folder.
"""

from __future__ import annotations

import pytest

from service_fixtures import (  # noqa: F401  (fixtures used by the tests of this folder)
    Cluster,
    broker_env,
    checkpoint,
    cluster,
    embedded_env,
    make_cluster,
    photos,
    redis_server,
    use_cluster,
)


@pytest.fixture(scope="module")
def queue(redis_server, tmp_path_factory) -> Cluster:  # noqa: F811 (the fixture above)
    """A broker and a migrated SQLite database, and no worker: submissions stay queued."""
    return make_cluster(tmp_path_factory.mktemp("queue"), redis_server)


@pytest.fixture
def submitter(queue: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    return use_cluster(queue, monkeypatch)
