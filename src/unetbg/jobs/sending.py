"""Celery task ids of a job, and publishing its tasks by name.

A task id names its job and, for a remove-dir chunk, the chunk: ``<job>-train``,
``<job>-evaluate``, ``<job>-chunk0003`` — readable in Flower. Work sent *again*
(``unetbg retry``, ``submit-train --resume``, the images of a dead worker) gets the
job's next *send round* as a suffix: ``<job>-chunk0003-r2``. Never the same id twice,
because ``unetbg cancel`` revokes ids and workers keep revoked ids in memory for as
long as they run: a message sent again under a revoked id would be discarded unrun,
and its job would wait for ever (issue 20, item 1).

The service never imports the task code: tasks are named on the Celery app.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from unetbg.db.models import Job
from unetbg.settings import Settings


@dataclass(frozen=True)
class Sending:
    """What publishing a job's tasks needs: its id, kind and current send round."""

    id: str
    kind: str
    send_round: int = 0

    @classmethod
    def of(cls, job: Job) -> Sending:
        return cls(job.id, job.kind, job.send_round or 0)


def task_id(job_id: str, kind: str, send_round: int = 0, chunk: int | None = None) -> str:
    """The task id of a job's whole-job task, or of its ``chunk``, in ``send_round``."""
    base = f"{job_id}-chunk{chunk:04d}" if kind == "remove_dir" else f"{job_id}-{kind}"
    return base if not send_round else f"{base}-r{send_round}"


def task_ids(job: Sending | Job, chunks: Iterable[int] = ()) -> list[str]:
    """The task ids of ``job``'s current round: one per chunk (remove-dir) or one."""
    send_round = getattr(job, "send_round", 0) or 0
    if job.kind == "remove_dir":
        return [task_id(job.id, job.kind, send_round, chunk) for chunk in chunks]
    return [task_id(job.id, job.kind, send_round)]


def task_ids_of_every_round(job: Job, chunks: Iterable[int] = ()) -> list[str]:
    """Every id ``job``'s tasks (its ``chunks``) may have been sent under, to revoke
    them all: a chunk sent in round 0 and never again still waits under its first id."""
    chunks = list(chunks)
    rounds = range((job.send_round or 0) + 1)
    if job.kind == "remove_dir":
        return [task_id(job.id, job.kind, r, chunk) for chunk in chunks for r in rounds]
    return [task_id(job.id, job.kind, r) for r in rounds]


def next_round(job: Job) -> None:
    """Start a new send round for ``job``: what is sent from now on has new task ids.

    Called in the transaction that makes work ready to be sent again, before the send.
    """
    job.send_round = (job.send_round or 0) + 1


def send_tasks(job: Sending, chunks: dict[int, list[int]], settings: Settings) -> list[str]:
    """Publish ``job``'s task (or its ``chunks``: number -> item ids) on the broker;
    returns the task ids sent. Call it after the transaction that recorded the work."""
    # Here, not at the top: reading jobs (the web page, `unetbg status`) needs no Celery.
    from unetbg.workers.app import EVALUATE_TASK, REMOVE_CHUNK_TASK, TRAIN_TASK, get_app

    app = get_app(settings)
    if job.kind != "remove_dir":
        name = TRAIN_TASK if job.kind == "train" else EVALUATE_TASK
        (sent,) = task_ids(job)
        app.send_task(name, args=[job.id], task_id=sent, argsrepr=f"job={job.id}")
        return [sent]
    sent_ids: list[str] = []
    for chunk, item_ids in chunks.items():
        (sent,) = task_ids(job, [chunk])
        app.send_task(
            REMOVE_CHUNK_TASK,
            args=[job.id, item_ids],
            task_id=sent,
            argsrepr=f"job={job.id} chunk={chunk} items={len(item_ids)}",
        )
        sent_ids.append(sent)
    return sent_ids
