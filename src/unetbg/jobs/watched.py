"""Watched remove-dir jobs (``unetbg remove-dir IN OUT --watch``): a job kept open while
a process watches its input folder and adds each new or changed image as an item.

A watched job carries ``params["watch"] = {"by": host:pid, "beat": ISO time,
"runs_items": bool}``: the watching process, its last beat (:func:`beat_watch`) and
whether it runs the items itself (embedded mode) or workers do. While it is there,
settling never makes the job final (:func:`unetbg.jobs.records.settle_remove_dir`);
:func:`close_watch` removes it and settles the job as any other. A watcher that died is
found by :func:`unetbg.jobs.mark_lost_jobs` (:func:`unetbg.jobs.liveness.watcher_gone`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from unetbg.db.models import FINAL_JOB_STATES, JobItem, utcnow
from unetbg.jobs.errors import JobError
from unetbg.jobs.liveness import worker_identity
from unetbg.jobs.records import end_watch, settle_remove_dir, shift_counts, watching
from unetbg.jobs.store import db_session, find_job
from unetbg.jobs.views import iso
from unetbg.settings import Settings, get_settings


def new_watch(settings: Settings) -> dict:
    """The ``params["watch"]`` of a job this process is about to watch."""
    return {"by": worker_identity(), "beat": iso(utcnow()), "runs_items": settings.embedded}


@dataclass(frozen=True)
class Added:
    """What :func:`add_watched_files` did with the files it was given."""

    #: Chunk number -> item ids made pending now: to dispatch.
    chunks: dict[int, list[int]] = field(default_factory=dict)
    #: Files whose item is running now: the run may have read the older content, so
    #: they are to be added again once it has finished.
    busy: list[Path] = field(default_factory=list)
    #: Files not added: gone, or no longer planned (a hidden name, say).
    ignored: list[Path] = field(default_factory=list)


def add_watched_files(
    job_id: str, paths: Iterable[str | os.PathLike], settings: Settings | None = None
) -> Added:
    """Add complete files under a watched job's input folder as items of the job.

    Outputs are planned as ``plan_folder`` plans them for the whole folder (so a later
    ``remove-dir`` of the same folder maps each file to the same output), with
    ``overwrite``: a file that arrived or changed is newer than any output of its name.
    Only the files given are planned (``plan_in_folder``: one listing of their folders'
    names, no walk of the tree) and only their items read: the job's first scan is its
    one pass over the whole folder, so a new file's wait does not grow with the folder.
    A file the job already has gets its item back (one item per file): ``pending``
    again in a new chunk, unless it is pending already (it will read the new content)
    or running (:attr:`Added.busy`). Raises :class:`JobError` when the job is no longer
    open for new images (final, cancelled, or its watch ended).
    """
    settings = settings or get_settings()
    with db_session(settings) as session:
        params = dict(_open_job(session, job_id).params)
    wanted = {str(Path(p)) for p in paths}
    planned = _plan(job_id, params, wanted)
    ignored = [Path(p) for p in sorted(wanted - set(planned))]
    return _add_planned(job_id, params, planned, ignored, settings)


def add_watched_objects(
    job_id: str, urls: Iterable[object], settings: Settings | None = None
) -> Added:
    """:func:`add_watched_files` for a job whose input is an object-store prefix:
    ``urls`` (``s3://BUCKET/KEY``) are planned with the prefix's listing (an object's
    output name depends on its neighbours' names, as in a folder), with ``overwrite``."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        params = dict(_open_job(session, job_id).params)
    wanted = set(map(str, urls))
    planned = _plan_objects(job_id, params, wanted)
    from unetbg.removal.storage import location

    ignored = [location(u) for u in sorted(wanted - set(planned))]
    return _add_planned(job_id, params, planned, ignored, settings)


def _add_planned(
    job_id: str, params: dict, planned: dict, ignored: list, settings: Settings
) -> Added:
    """Record ``planned`` (source -> ``PlannedItem``) as items of the open job."""
    chunks: dict[int, list[int]] = {}
    busy: list = []
    with db_session(settings) as session:
        job = _open_job(session, job_id)
        items = {
            item.source_path: item
            for item in session.scalars(
                select(JobItem).where(JobItem.job_id == job.id, JobItem.source_path.in_(planned))
            )
        }
        last = session.scalar(select(func.max(JobItem.chunk)).where(JobItem.job_id == job.id))
        chunk, size = (-1 if last is None else last), params["chunk_size"]
        fresh: list[JobItem] = []
        delta, no_person = Counter(), 0  # the job's counters follow each item's move
        for source, plan in sorted(planned.items()):
            item = items.get(source)
            if item is not None and item.state == "running":
                busy.append(plan.source)
                continue
            if item is not None and item.state == "pending":
                continue
            if item is not None:
                delta[item.state] -= 1
                no_person -= item.state == "succeeded" and _no_person(item.person_share)
            delta["skipped" if plan.skip_reason else "pending"] += 1
            # ``progress_total`` counts the items not skipped.
            counted = item is not None and item.state != "skipped"
            job.progress_total += (not plan.skip_reason) - counted
            if item is None:
                item = JobItem(job_id=job.id, source_path=source)
                session.add(item)
            item.output_path = None if plan.output is None else str(plan.output)
            item.error, item.claimed_by, item.duration_s, item.updated_at = (
                plan.skip_reason,
                None,
                None,
                utcnow(),
            )
            if plan.skip_reason:
                item.state, item.chunk = "skipped", None
                continue
            item.state = "pending"
            fresh.append(item)
        session.flush()
        shift_counts(session, job.id, delta, no_person)
        for index, item in enumerate(fresh):
            if index % size == 0:
                chunk += 1
            item.chunk = chunk
            chunks.setdefault(chunk, []).append(item.id)
        settle_remove_dir(session, job)  # progress: a redone item is no longer done
    return Added(chunks, busy, ignored)


def _plan(job_id: str, params: dict, wanted: set[str]) -> dict:
    """The files ``wanted`` (paths as given) that the job's folder plan has, each planned
    alone (see :func:`add_watched_files`): path -> ``PlannedItem``."""
    from unetbg.removal import OutputOptions, plan_in_folder

    try:
        plans = plan_in_folder(
            params["input_dir"],
            params["output_dir"],
            wanted,
            output_format=OutputOptions.from_params(params["options"]).format,
            follow_symlinks=params.get("follow_symlinks", False),
            overwrite=True,
        )
    except (ValueError, OSError) as exc:  # the folder itself went away or became wrong
        raise JobError(f"cannot plan new images of job {job_id}: {exc}") from None
    return {str(plan.source): plan for plan in plans}


def _plan_objects(job_id: str, params: dict, wanted: set[str]) -> dict:
    """The objects ``wanted`` (URLs) that the job's prefix plan has: URL -> ``PlannedItem``."""
    from unetbg.removal import OutputOptions
    from unetbg.removal.storage import location, plan_job

    try:
        plans = plan_job(
            location(params["input_dir"]),
            location(params["output_dir"]),
            OutputOptions.from_params(params["options"]).format,
            overwrite=True,
        )
    except (ValueError, OSError) as exc:  # the bucket went away, credentials refused
        raise JobError(f"cannot plan new images of job {job_id}: {exc}") from None
    return {str(plan.source): plan for plan in plans if str(plan.source) in wanted}


def beat_watch(job_id: str, settings: Settings | None = None) -> bool:
    """Record that the watcher of ``job_id`` is alive; ``False`` when it should stop:
    the job was cancelled or ended meanwhile, or its watch was ended (judged lost)."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        job = find_job(session, job_id, for_update=True)
        if not watching(job) or job.cancel_requested or job.state in FINAL_JOB_STATES:
            return False
        watch = dict(job.params["watch"]) | {"beat": iso(utcnow())}
        job.params = dict(job.params) | {"watch": watch}
        return True


def close_watch(job_id: str, settings: Settings | None = None) -> None:
    """End the watch of ``job_id``: it settles as any remove-dir job, final once the items
    already queued are done (at once if none is left)."""
    settings = settings or get_settings()
    with db_session(settings) as session:
        end_watch(session, find_job(session, job_id, for_update=True))


def _open_job(session, job_id: str):
    job = find_job(session, job_id, for_update=True)
    if not watching(job) or job.cancel_requested or job.state in FINAL_JOB_STATES:
        raise JobError(f"job {job.id} is {job.state} and no longer takes new images")
    return job


def _no_person(share: float | None) -> bool:
    # Lazily, as records.no_person_filter: the job service loads no image code up front.
    from unetbg.removal.presence import no_person

    return no_person(share)
