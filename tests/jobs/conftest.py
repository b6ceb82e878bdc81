"""Real services for the job tests: Redis, a Celery worker, the SQLite job database,
real COCO photos and a real (random-weight) checkpoint.

They live in tests/service_fixtures.py, shared with tests/reliability/; importing the
fixtures here registers them for this folder.
"""

from __future__ import annotations

from service_fixtures import (  # noqa: F401  (fixtures used by the tests of this folder)
    broker_env,
    checkpoint,
    cluster,
    embedded_env,
    photos,
    redis_server,
)
