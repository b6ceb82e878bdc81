"""The Celery app's delivery settings and the worker's fork-safety guarantees."""

from __future__ import annotations

import subprocess
import sys

from unetbg.settings import get_settings
from unetbg.workers.app import QUEUES, TASK_ROUTES, create_app


def test_delivery_settings_come_from_settings():
    settings = get_settings(
        {"UNETBG_BROKER_URL": "redis://127.0.0.1:1/0", "UNETBG_VISIBILITY_TIMEOUT": "1234"}
    )
    conf = create_app(settings, set_as_current=False).conf
    assert conf.broker_url == "redis://127.0.0.1:1/0"
    assert conf.broker_transport_options["visibility_timeout"] == 1234
    assert list(conf.accept_content) == ["json"] and conf.task_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_connection_retry_on_startup and conf.broker_connection_max_retries is None
    assert {q.name for q in conf.task_queues} == set(QUEUES)
    assert conf.task_routes == TASK_ROUTES


def test_worker_parent_loads_tasks_but_not_torch():
    # What `celery -A unetbg.workers.app worker` imports before forking its pool.
    code = (
        "import sys\n"
        "from unetbg.workers.app import app, TASK_ROUTES\n"
        "app.loader.import_default_modules()\n"
        "assert set(TASK_ROUTES) <= set(app.tasks), sorted(app.tasks)\n"
        "assert 'torch' not in sys.modules, 'torch imported in the worker parent'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
