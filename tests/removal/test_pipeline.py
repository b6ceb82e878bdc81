"""unetbg.removal.pipeline: the pipelined loop on real files, next to the serial one.

Each stage fails for real: an unreadable file (readers), a batch the model refuses
(the network), an output whose folder cannot be made (writers), an ``on_result``
that stops the run (a cancelled job). The bookkeeping must come out as in the serial
loop, the outputs byte for byte the same, and the pipeline never holds more images
than its bound.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from inference_fixtures import tiny_checkpoint, write_photo
from unetbg.inference import ModelInference
from unetbg.removal import (
    SKIP_NOT_IMAGE,
    ItemResult,
    OutputOptions,
    PipelineLimits,
    PipelineStats,
    PlannedItem,
    plan_folder,
    process_images,
)

SERIAL = PipelineLimits(serial=True)
#: Small queues and several threads: every overlap happens with only a few images.
TIGHT = PipelineLimits(readers=2, writers=2, read_ahead=2, write_behind=2)
#: Inputs this wide make the network refuse them (see PickyModel).
REFUSED_WIDTH = 37


class PickyModel(ModelInference):
    """The real model, refusing any batch that holds an image ``REFUSED_WIDTH`` wide
    (as a network runs out of memory on one huge image): the loop must retry the
    batch one image at a time so that only that image fails."""

    def predict_prepared(self, prepared):
        if any(box[1] == REFUSED_WIDTH for _, box in prepared):
            raise RuntimeError("refused: image too wide for this test")
        return super().predict_prepared(prepared)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> PickyModel:
    return PickyModel(tiny_checkpoint(tmp_path_factory), device="cpu", batch_size=3)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> Path:
    """Real COCO photos, a few generated ones, and one bad file per failure kind."""
    src = tmp_path_factory.mktemp("photos")
    for path in sorted((coco_mini / "val2017").glob("*.jpg"))[:7]:
        shutil.copyfile(path, src / path.name)
    write_photo(src / "sub" / "two.png", 33, 41)
    write_photo(src / "sub" / "wide.png", REFUSED_WIDTH, 20)
    write_photo(src / "three.webp", 20, 20)
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (src / "empty.png").write_bytes(b"")
    (src / "readme.txt").write_text("skip me")
    return src


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _run(model, src: Path, out: Path, limits: PipelineLimits, **kwargs):
    items = plan_folder(src, out, kwargs.pop("format", "png"))
    reported: list[tuple[str, ItemResult]] = []
    threads: set[str] = set()

    def on_result(item: PlannedItem, result: ItemResult) -> None:
        threads.add(threading.current_thread().name)
        reported.append((item.relative.as_posix(), result))

    options = OutputOptions(**kwargs)
    results = process_images(model, items, options, on_result, limits=limits)
    return items, results, reported, threads


def _outcomes(items, results) -> dict[str, tuple[bool, bool, str | None]]:
    return {
        it.relative.as_posix(): (r.ok, r.skipped, r.error)
        for it, r in zip(items, results, strict=True)
    }


@pytest.mark.parametrize("kind", ["cutout", "mask"])
def test_pipelined_matches_serial_byte_for_byte(tmp_path: Path, model, photos: Path, kind):
    serial = _run(model, photos, tmp_path / "serial", SERIAL, kind=kind)
    piped = _run(model, photos, tmp_path / "piped", TIGHT, kind=kind)

    assert _outcomes(*piped[:2]) == _outcomes(*serial[:2])
    assert _digest(tmp_path / "piped") == _digest(tmp_path / "serial")
    # Every item reported exactly once, from one reporter thread (never concurrently).
    for items, results, reported, _ in (serial, piped):
        assert sorted(rel for rel, _ in reported) == sorted(it.relative.as_posix() for it in items)
        assert dict(reported) == dict(
            zip([it.relative.as_posix() for it in items], results, strict=True)
        )
    assert serial[3] == {threading.current_thread().name}
    assert piped[3] == {"unetbg-reporter"}


def test_each_stage_fails_only_its_item(tmp_path: Path, model, photos: Path) -> None:
    out = tmp_path / "out"
    items = plan_folder(photos, out)
    # After planning, a file takes the place of the folder "sub" (writers fail there).
    out.mkdir()
    (out / "sub").write_bytes(b"in the way")
    results = process_images(model, items, OutputOptions(), limits=TIGHT)
    by = _outcomes(items, results)

    assert by["readme.txt"] == (False, True, SKIP_NOT_IMAGE)
    assert by["empty.png"] == (False, False, "empty file (0 bytes)")  # reader
    assert by["sub/broken.jpg"][:2] == (False, False) and "JPEG" in by["sub/broken.jpg"][2]
    assert by["sub/wide.png"][:2] == (False, False)  # network, alone: its batch-mates pass
    assert (
        by["sub/wide.png"][2]
        == "prediction failed: RuntimeError: refused: image too wide for this test"
    )
    assert by["sub/two.png"][:2] == (False, False)  # writer
    assert by["sub/two.png"][2].startswith("cannot write output: ")
    written = {rel for rel, (ok, _, _) in by.items() if ok}
    assert written == {p.name for p in photos.glob("*.jpg")} | {"three.webp"}
    assert all(r.seconds > 0 for r in results if not r.skipped)
    expected = {f"{Path(rel).with_suffix('.png').as_posix()}" for rel in written} | {"sub"}
    assert {p.relative_to(out).as_posix() for p in out.iterdir()} == expected


class StopRun(Exception):
    """What a cancelled job's ``on_result`` raises."""


@pytest.mark.parametrize("limits", [SERIAL, TIGHT], ids=["serial", "pipelined"])
def test_stop_mid_run_leaves_exactly_the_reported_outputs(tmp_path, model, photos, limits):
    out = tmp_path / "out"
    items = plan_folder(photos, out)
    reported: list[ItemResult] = []

    def on_result(item: PlannedItem, result: ItemResult) -> None:
        reported.append(result)
        if sum(r.ok for r in reported) == 3:
            raise StopRun

    with pytest.raises(StopRun):
        process_images(model, items, OutputOptions(), on_result, limits=limits)
    # The image whose report raised was written (as the serial loop always did), and
    # nothing after it: no output, no temporary file, no further report.
    assert sum(r.ok for r in reported) == 3
    assert sorted(p for p in out.rglob("*") if p.is_file()) == sorted(
        r.output for r in reported if r.ok
    )


def test_never_holds_more_than_its_bound(tmp_path: Path, model, photos: Path) -> None:
    src = tmp_path / "many"
    src.mkdir()
    for i, path in enumerate(sorted(photos.glob("*.jpg")) * 3):
        shutil.copyfile(path, src / f"{i:02d}.jpg")
    items = plan_folder(src, tmp_path / "out")
    stats = PipelineStats()
    limits = PipelineLimits(readers=2, writers=2, read_ahead=3, write_behind=3)

    def slow_report(item: PlannedItem, result: ItemResult) -> None:
        time.sleep(0.05)  # slow bookkeeping: the queues behind it fill up

    results = process_images(model, items, OutputOptions(), slow_report, limits=limits, stats=stats)
    assert all(r.ok for r in results) and len(results) == 21
    assert stats.bound == 3 + model.batch_size + 3
    assert stats.peak_held <= stats.bound
    assert stats.peak_held >= stats.bound - 1, stats  # the bound was actually reached
    assert stats.batches == 7 and stats.network_s > 0


def test_results_align_with_items_whatever_finishes_first(tmp_path: Path, model) -> None:
    # Large and small images interleaved: encodes finish out of order.
    src = tmp_path / "in"
    for i in range(10):
        size = (300, 200) if i % 2 else (16, 12)
        write_photo(src / f"{i}.png", *size)
    items = plan_folder(src, tmp_path / "out")
    results = process_images(
        model, items, OutputOptions(), limits=PipelineLimits(writers=4, write_behind=6)
    )
    assert [r.source for r in results] == [it.source for it in items]
    assert [r.output for r in results] == [it.output for it in items]
    assert all(r.ok for r in results)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="read_ahead must be >= 1"):
        PipelineLimits(read_ahead=0)
    with pytest.raises(ValueError, match="writers must be >= 1"):
        PipelineLimits(writers=0)
    assert np.isfinite(PipelineStats().network_s)
