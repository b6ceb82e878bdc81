"""Services for the reliability tests (see tests/service_fixtures.py).

``shared_cluster``: one prefork worker (concurrency 1) with a low pixel limit, for the
bad-input and security tests, which leave it running. Fault tests start and kill their
own workers on their own Redis (``fault_cluster``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from corpus import MAX_PIXELS

from service_fixtures import (  # noqa: F401  (fixtures used by the tests of this folder)
    Cluster,
    checkpoint,
    embedded_env,
    make_cluster,
    redis_server,
    start_redis,
    use_cluster,
)


@pytest.fixture(scope="session")
def shared_cluster(redis_server, tmp_path_factory) -> Iterator[Cluster]:  # noqa: F811
    cluster = make_cluster(
        tmp_path_factory.mktemp("shared-cluster"),
        redis_server,
        UNETBG_MAX_IMAGE_PIXELS=str(MAX_PIXELS),
    )
    cluster.start_worker(queues="train,infer")
    yield cluster
    cluster.stop_worker()


@pytest.fixture
def shared_env(shared_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """This test process talks to ``shared_cluster``'s broker and database."""
    return use_cluster(shared_cluster, monkeypatch)


@pytest.fixture(scope="module")
def fault_cluster(tmp_path_factory) -> Iterator[Cluster]:
    """A cluster on its own Redis, persistent as in docker-compose.yml, with no worker
    started: each fault test starts (and kills) what it needs."""
    redis = start_redis(tmp_path_factory.mktemp("fault-redis"), persist=True)
    cluster = make_cluster(tmp_path_factory.mktemp("fault-cluster"), redis)
    yield cluster
    cluster.stop_worker()
    redis.stop()


@pytest.fixture
def fault_env(fault_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """The test process on ``fault_cluster``; every worker the test started is stopped."""
    yield use_cluster(fault_cluster, monkeypatch)
    fault_cluster.stop_worker()
