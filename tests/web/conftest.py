"""Fixtures for the web page tests: a small real checkpoint and a migrated job database."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of a randomly initialised model with 64-pixel preprocessing.

    Random weights still give a probability map of the right size, which is all the
    page needs to show and download a result.
    """
    import torch

    from unetbg.model.checkpoint import build_checkpoint, save_checkpoint
    from unetbg.model.config import ModelConfig, Preprocessing
    from unetbg.model.net import create_model

    torch.manual_seed(0)
    config = ModelConfig()
    model = create_model(config)
    state = build_checkpoint(model, config, Preprocessing(image_size=64), epoch=1, metrics={})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "random64.pth", state)


@pytest.fixture
def job_db(tmp_path) -> str:
    """URL of a fresh SQLite job database at the current schema revision."""
    from unetbg.db.schema import upgrade

    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture
def recorded_jobs(job_db) -> dict:
    """Insert, through the real models, a finished training job with three epochs of
    train/val metrics and two checkpoints, and a partial remove-dir job with two failed
    items. Returns the database URL and the job ids."""
    from datetime import UTC, datetime, timedelta

    from unetbg.db.models import Checkpoint, EpochMetric, Job, JobItem
    from unetbg.db.session import session_scope
    from unetbg.jobs.records import recount

    start = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
    with session_scope(job_db) as session:
        train = Job(
            kind="train",
            state="succeeded",
            params={"preset": "smoke"},
            progress_done=3,
            progress_total=3,
            created_at=start,
            started_at=start + timedelta(seconds=2),
            finished_at=start + timedelta(seconds=92),
        )
        remove = Job(
            kind="remove_dir",
            state="partial",
            params={"input": "/photos"},
            progress_done=3,
            progress_total=3,
            created_at=start + timedelta(minutes=5),
            started_at=start + timedelta(minutes=5, seconds=1),
            finished_at=start + timedelta(minutes=5, seconds=9),
        )
        session.add_all([train, remove])
        session.flush()
        for epoch, (loss, iou) in enumerate([(0.9, 0.31), (0.6, 0.48), (0.45, 0.57)], start=1):
            for split, shift in (("train", 0.0), ("val", 0.05)):
                session.add(
                    EpochMetric(
                        job_id=train.id,
                        epoch=epoch,
                        split=split,
                        loss=loss + shift,
                        iou=iou - shift,
                        dice=iou + 0.1 - shift,
                        pixel_accuracy=0.8 + epoch * 0.03 - shift,
                        lr=1e-3,
                    )
                )
        session.add_all(
            [
                Checkpoint(
                    job_id=train.id,
                    path="/runs/a/model_best.pth",
                    epoch=2,
                    metrics={"iou": 0.43},
                    sha256="a" * 64,
                    is_best=True,
                    created_at=start + timedelta(seconds=60),
                ),
                Checkpoint(
                    job_id=train.id,
                    path="/runs/b/model_best.pth",
                    epoch=3,
                    metrics={"iou": 0.52},
                    sha256="b" * 64,
                    is_best=True,
                    created_at=start + timedelta(seconds=50),
                ),
                Checkpoint(
                    job_id=train.id,
                    path="/runs/a/last_model.pth",
                    epoch=3,
                    metrics={"iou": 0.61},
                    sha256="c" * 64,
                    is_best=False,
                    created_at=start + timedelta(seconds=90),
                ),
            ]
        )
        session.add_all(
            [
                JobItem(job_id=remove.id, source_path="/photos/ok.jpg", state="succeeded"),
                JobItem(
                    job_id=remove.id,
                    source_path="/photos/broken.jpg",
                    state="failed",
                    error="truncated JPEG file (image file is truncated)",
                ),
                JobItem(
                    job_id=remove.id,
                    source_path="/photos/notes.png",
                    state="failed",
                    error="not a recognised image format",
                ),
            ]
        )
        session.flush()
        recount(session, remove.id)  # rows written by hand: their counters follow
        ids = {"train": train.id, "remove": remove.id}
    return {"url": job_db, **ids}
