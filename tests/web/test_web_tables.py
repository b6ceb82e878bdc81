"""Dashboard tables and curves built from jobs recorded in a real SQLite database."""

from __future__ import annotations

from unetbg import jobs
from unetbg.settings import get_settings
from unetbg.web import tables


def _settings(recorded_jobs, tmp_path):
    return get_settings(
        {"UNETBG_DATA_DIR": str(tmp_path), "UNETBG_DATABASE_URL": recorded_jobs["url"]}
    )


def test_jobs_table_newest_first_with_progress_and_duration(recorded_jobs, tmp_path):
    settings = _settings(recorded_jobs, tmp_path)
    table = tables.jobs_table(jobs.list_jobs(settings=settings))
    assert list(table["id"]) == [recorded_jobs["remove"], recorded_jobs["train"]]
    train = table.iloc[1]
    assert (train["kind"], train["state"], train["progress"]) == ("train", "succeeded", "3/3")
    assert train["seconds"] == 90.0


def test_failed_items_carry_their_reasons(recorded_jobs, tmp_path):
    settings = _settings(recorded_jobs, tmp_path)
    items = jobs.list_items(recorded_jobs["remove"], states=["failed"], settings=settings)
    assert tables.failed_table(items).to_dict("records") == [
        {"source": "/photos/broken.jpg", "reason": "truncated JPEG file (image file is truncated)"},
        {"source": "/photos/notes.png", "reason": "not a recognised image format"},
    ]


def test_epoch_curves_one_chart_per_metric_one_line_per_split(recorded_jobs, tmp_path):
    settings = _settings(recorded_jobs, tmp_path)
    curves = tables.epoch_curves(jobs.list_epoch_metrics(recorded_jobs["train"], settings=settings))
    assert list(curves) == ["Loss", "IoU", "Dice", "Pixel accuracy"]
    iou = curves["IoU"]
    assert list(iou.columns) == ["train", "val"]
    assert list(iou.index) == [1, 2, 3]
    assert iou.loc[3, "train"] == 0.57
    assert round(iou.loc[1, "val"], 6) == 0.26
    assert tables.epoch_curves([]) == {}


def test_checkpoints_table_shows_val_iou(recorded_jobs, tmp_path):
    settings = _settings(recorded_jobs, tmp_path)
    table = tables.checkpoints_table(
        jobs.list_checkpoints(recorded_jobs["train"], settings=settings)
    )
    assert list(table["path"])[0] == "/runs/a/last_model.pth"
    assert sorted(table["val IoU"]) == [0.43, 0.52, 0.61]
    # These recorded files are not on this machine: none of them can be the page's
    # preselected model (a registered checkpoint whose file is gone is skipped).
    assert jobs.best_checkpoint(settings) is None
