"""The one Celery app: broker, queues, routing and the worker signals.

Start a worker with ``celery -A unetbg.workers.app worker -Q train,infer`` or
``unetbg worker``. Tasks are referenced by name only (``include`` below), so
importing this module loads neither torch nor the task code.

Delivery guarantees (see docs/jobs.md):

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged
  when its task returns, so a worker killed mid-task (OOM, crash, lost host)
  gets it redelivered instead of silently losing it.
* ``worker_prefetch_multiplier = 1``: a worker holds only the message it runs,
  so a long training task never sits on a queue of chunks other workers could do.
* ``visibility_timeout`` (Redis) is ``Settings.visibility_timeout``; tasks also
  keep a heartbeat in the database so a redelivered message whose job is still
  alive elsewhere is deferred rather than run twice.
* After a lost broker connection, the worker sends again the unstarted work whose
  messages no queue holds any more; and every few seconds, the images held by a
  worker that died (:mod:`unetbg.tasks.recovery`).
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init
from kombu import Queue

from unetbg.db.session import dispose_engines
from unetbg.settings import Settings, get_settings
from unetbg.workers import metrics  # noqa: F401  (connects the task counter's signal)
from unetbg.workers.metrics_endpoint import OPTIONS, MetricsStep

TRAIN_QUEUE = "train"
INFER_QUEUE = "infer"
QUEUES = (TRAIN_QUEUE, INFER_QUEUE)

#: Task names, used by the job service to enqueue without importing task code.
TRAIN_TASK = "unetbg.train_job"
EVALUATE_TASK = "unetbg.evaluate_job"
REMOVE_CHUNK_TASK = "unetbg.remove_chunk"

#: Long, whole-GPU work goes to ``train``; short image chunks to ``infer`` so a
#: cut-out job is never stuck behind a training run on the same worker.
TASK_ROUTES = {
    TRAIN_TASK: {"queue": TRAIN_QUEUE},
    EVALUATE_TASK: {"queue": TRAIN_QUEUE},
    REMOVE_CHUNK_TASK: {"queue": INFER_QUEUE},
}


def create_app(settings: Settings | None = None, set_as_current: bool = True) -> Celery:
    """Build the Celery app from ``settings`` (default: the current environment)."""
    settings = settings or get_settings()
    app = Celery(
        "unetbg",
        set_as_current=set_as_current,
        # No broker means embedded mode: nothing is ever sent, tasks run via ``apply``.
        broker=settings.broker_url or "memory://",
        include=["unetbg.tasks.train", "unetbg.tasks.remove", "unetbg.tasks.evaluate"],
    )
    app.conf.update(
        # JSON only: a pickle payload from anyone who can write to Redis would run code.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        # The database is the record of every job; no result backend to keep in sync.
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue=INFER_QUEUE,
        task_routes=TASK_ROUTES,
        # Events let Flower show tasks with their job ids (argsrepr) as they run.
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "socket_keepalive": True,
            "health_check_interval": 25,
        },
        # Survive a Redis restart: keep retrying the connection, at start-up too.
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_channel_error_retry=True,
        # A Redis blip must not kill a multi-hour training run that is still healthy;
        # its late ack is retried after the reconnect (and duplicates are deferred).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_publish_retry=True,
        # About 5 s of retries, then the job service marks the job failed and says so.
        task_publish_retry_policy={
            "max_retries": 5,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 2.0,
        },
        enable_utc=True,
    )
    # `--metrics-port` / `--metrics-host` (docs/deployment.md, "Metrics").
    app.steps["worker"].add(MetricsStep)
    # By name, as the tasks are: this module imports no task code (docs/architecture.md).
    app.steps["consumer"].add("unetbg.tasks.recovery:ResendLost")
    # Every few seconds, the images of dead workers are sent again (docs/jobs.md).
    app.steps["consumer"].add("unetbg.tasks.recovery:RecoverLostWork")
    for option in OPTIONS:
        app.user_options["worker"].add(option)
    return app


app = create_app()
_other_apps: dict[str, Celery] = {}


def get_app(settings: Settings | None = None) -> Celery:
    """The app for ``settings``' broker: the module's ``app`` unless the environment
    changed since import (a long-lived process such as the test runner or web page)."""
    settings = settings or get_settings()
    wanted = settings.broker_url or "memory://"
    if app.conf.broker_url == wanted:
        return app
    if wanted not in _other_apps:
        _other_apps[wanted] = create_app(settings, set_as_current=False)
    return _other_apps[wanted]


def queue_consumers(
    queue: str, settings: Settings | None = None, timeout: float = 1.0
) -> list[str]:
    """Node names of the workers consuming ``queue`` now (Celery's inspect
    ``active_queues``, answered by every live worker within ``timeout`` seconds)."""
    replies = get_app(settings).control.inspect(timeout=timeout).active_queues() or {}
    return sorted(
        node
        for node, queues in replies.items()
        if any(q.get("name") == queue for q in queues or ())
    )


def queue_for(kind: str) -> str:
    """The queue a job of ``kind`` (``train``, ``evaluate``, ``remove_dir``) waits in."""
    task = {"train": TRAIN_TASK, "evaluate": EVALUATE_TASK}.get(kind, REMOVE_CHUNK_TASK)
    return TASK_ROUTES[task]["queue"]


@worker_process_init.connect
def _forget_parent_connections(**_kwargs) -> None:
    """Drop DB connections inherited over fork; load nothing else here.

    The model is loaded lazily by the first task (``unetbg.tasks.remove``) so the
    parent never initialises CUDA, which a forked child cannot use.
    """
    dispose_engines()
