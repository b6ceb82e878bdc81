"""training_history.png: whole-number epoch ticks and the best epoch marked (issue 11,
item 16). Drawn from real records into a real PNG."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from unetbg.training.history import best_epoch_of, history_figure, plot_history


def _records(val_ious: list[float]) -> list[dict]:
    return [
        {
            "epoch": epoch,
            "train_loss": 1.0 / epoch,
            "val_loss": 1.1 / epoch,
            "train_iou": iou * 0.9,
            "val_iou": iou,
            "train_dice": iou,
            "val_dice": iou,
            "train_pixel_accuracy": 0.9,
            "val_pixel_accuracy": 0.9,
        }
        for epoch, iou in enumerate(val_ious, start=1)
    ]


def test_epoch_ticks_are_whole_numbers_and_the_best_epoch_is_marked(tmp_path: Path):
    records = _records([0.2, 0.5, 0.4])  # three epochs: matplotlib alone ticks 1.25, 1.5 …
    assert best_epoch_of(records) == 2
    fig = history_figure(records)
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        shown = [t for t in ax.get_xticks() if low <= t <= high]
        assert shown and all(float(t).is_integer() for t in shown), (ax.get_title(), shown)
        best = [line for line in ax.get_lines() if line.get_label() == "best epoch 2"]
        assert len(best) == 1 and list(best[0].get_xdata()) == [2, 2], ax.get_title()
        assert "best epoch 2" in [t.get_text() for t in ax.get_legend().get_texts()]
        stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
        assert len(stars) == 1 and list(stars[0].get_xdata()) == [2]

    plot_history(records, tmp_path / "training_history.png")
    with Image.open(tmp_path / "training_history.png") as png:
        assert png.format == "PNG" and png.size == (1000, 700)


def test_best_epoch_follows_fit_mean_iou_and_ties(tmp_path: Path):
    records = _records([0.3, 0.6, 0.6])
    assert best_epoch_of(records) == 2  # a tie keeps the earlier epoch, as fit does
    records[0]["val_mean_iou"], records[1]["val_mean_iou"], records[2]["val_mean_iou"] = (
        0.7,
        0.1,
        0.2,
    )
    assert best_epoch_of(records) == 1  # several sources: the mean over them decides
    assert best_epoch_of([{"epoch": 1, "train_loss": 1.0}]) is None
    plot_history(records[:1], tmp_path / "one.png", best_epoch=1)  # one epoch draws too
    assert (tmp_path / "one.png").stat().st_size > 0
