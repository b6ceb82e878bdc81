"""The job service: create jobs and their items, dispatch them, cancel, query.

Used by the CLI, the web page and the Celery tasks; its public functions take and
return plain values (ids, paths, the ``*View`` dataclasses), never ORM objects bound
to a session. In both modes (embedded or broker, :mod:`unetbg.jobs.dispatch`) the
database is the record: progress, items, metrics and checkpoints are read back from
it, so watching a job survives a broker restart.

The modules, each importing only those listed before it:

* ``errors``: what the service refuses (:class:`JobError` and its kinds);
* ``store``: a checked transaction (:func:`db_session`), a job row by id or prefix;
* ``views``: the read-only snapshots (:class:`JobView`, :class:`ItemView`, …);
* ``sending``: task ids (with their send round) and publishing tasks by name;
* ``records``: what tasks record, inside their transaction: a job's end, the
  remove-dir tally, failing a job, checkpoints, epoch figures;
* ``liveness``: worker identity, heartbeats, watchers;
* ``claims``: what workers write about the work they hold: claims, heartbeats, each
  image's outcome, a run's end (the one owner of the states tasks change);
* ``lost``: the work of dead workers: sent again by the live ones, or reported lost;
* ``queries``: one job, lists, a job's items a page at a time, waiting for a job to end;
* ``watched``: a remove-dir job kept open by ``remove-dir --watch``: adding the files
  that arrive, the watcher's beat, ending the watch;
* ``checkpoints``: which model ``--checkpoint`` names (``best`` against the default),
  and forgetting a registered one;
* ``create``: recording new jobs;
* ``dispatch``: starting (embedded or on workers) and cancelling jobs, sending again
  what a broker restart lost;
* ``hints``: why a queued job may be waiting (no worker consumes its queue);
* ``runs``: training run folders, their sizes, and pruning them;
* ``documents``: a job and the checkpoints as the JSON that ``--json`` and the HTTP API
  print;
* ``stats``: figures over all jobs (by kind and state, images, queue depths) for
  monitoring, and the task ids waiting on the broker.

It never imports ``unetbg.tasks`` nor its front ends (``unetbg.cli``, ``unetbg.web``,
``unetbg.api``, ``unetbg.watch``); tasks are found by name on the Celery app.
"""

from __future__ import annotations

from unetbg.jobs.checkpoints import (
    MODEL_HEADER,
    ModelChoice,
    best_checkpoint,
    choose_checkpoint,
    describe_checkpoint,
    describe_model,
    resolve_checkpoint,
    unregister_checkpoint,
)
from unetbg.jobs.create import (
    create_evaluate_job,
    create_remove_dir_job,
    create_train_job,
    forget_train_run,
    record_train_run,
    resume_train_job,
)
from unetbg.jobs.dispatch import (
    EmbeddedRunner,
    cancel_job,
    dispatch,
    resend_lost,
    retry_job,
    run_inline,
    start_job,
    wait_for_run,
)
from unetbg.jobs.documents import (
    ITEM_CHOICES,
    checkpoint_documents,
    job_document,
)
from unetbg.jobs.errors import JobError, JobNotFound, NoCheckpointError
from unetbg.jobs.hints import QUEUE_HINT_AFTER_S, waiting_hints
from unetbg.jobs.liveness import (
    LOST_PREFIX,
    claimant_fresh,
    heartbeat_fresh,
    worker_alive,
    worker_identity,
)
from unetbg.jobs.lost import mark_lost_jobs, recover_lost_work, recovery_interval
from unetbg.jobs.queries import (
    ITEM_PAGE_SIZE,
    MAX_ITEM_PAGE_SIZE,
    ItemPage,
    ItemPageRequest,
    chosen_items,
    get_job,
    item_page,
    item_pages,
    list_checkpoints,
    list_epoch_metrics,
    list_items,
    list_jobs,
    wait_for_job,
)
from unetbg.jobs.records import (
    OPEN_ITEM_STATES,
    end_job,
    fail_job,
    item_counts,
    jsonable,
    register_checkpoint,
    settle_remove_dir,
    upsert_epoch_metrics,
)
from unetbg.jobs.runs import PrunePlan, RunView, list_runs, plan_prune, prune_runs
from unetbg.jobs.sending import task_ids
from unetbg.jobs.stats import (
    item_counts_by_state,
    items_finished_since,
    job_counts,
    queue_depths,
    queued_task_ids,
)
from unetbg.jobs.store import db_session
from unetbg.jobs.views import CheckpointView, EpochView, ItemView, JobView

__all__ = [
    "ITEM_CHOICES",
    "ITEM_PAGE_SIZE",
    "MAX_ITEM_PAGE_SIZE",
    "ItemPage",
    "ItemPageRequest",
    "item_page",
    "item_pages",
    "LOST_PREFIX",
    "QUEUE_HINT_AFTER_S",
    "OPEN_ITEM_STATES",
    "CheckpointView",
    "EmbeddedRunner",
    "EpochView",
    "ItemView",
    "JobError",
    "JobNotFound",
    "JobView",
    "NoCheckpointError",
    "PrunePlan",
    "RunView",
    "MODEL_HEADER",
    "ModelChoice",
    "best_checkpoint",
    "choose_checkpoint",
    "describe_model",
    "unregister_checkpoint",
    "cancel_job",
    "checkpoint_documents",
    "chosen_items",
    "claimant_fresh",
    "create_evaluate_job",
    "create_remove_dir_job",
    "create_train_job",
    "db_session",
    "dispatch",
    "end_job",
    "fail_job",
    "forget_train_run",
    "get_job",
    "heartbeat_fresh",
    "item_counts",
    "item_counts_by_state",
    "items_finished_since",
    "job_counts",
    "job_document",
    "jsonable",
    "list_checkpoints",
    "list_epoch_metrics",
    "list_items",
    "list_jobs",
    "list_runs",
    "mark_lost_jobs",
    "recover_lost_work",
    "recovery_interval",
    "plan_prune",
    "prune_runs",
    "queue_depths",
    "queued_task_ids",
    "record_train_run",
    "register_checkpoint",
    "describe_checkpoint",
    "resolve_checkpoint",
    "resend_lost",
    "retry_job",
    "resume_train_job",
    "run_inline",
    "settle_remove_dir",
    "start_job",
    "task_ids",
    "upsert_epoch_metrics",
    "wait_for_job",
    "wait_for_run",
    "waiting_hints",
    "worker_alive",
    "worker_identity",
]
