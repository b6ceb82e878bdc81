"""``unetbg remove-dir IN OUT --watch`` without a broker: the watching process runs the
new images itself. Real subprocesses, real files, a real (random-weight) model."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
from PIL import Image
from watch_process import SETTLE_S, settle_a_while, wait_for_file

from service_fixtures import STARTUP_S, copy_photos, wait_until


def embedded(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
    return env | {"UNETBG_DATA_DIR": str(tmp_path / "data")}


def photo_sources(coco_mini: Path) -> list[Path]:
    return sorted((coco_mini / "val2017").glob("*.jpg"))


def test_new_photo_is_cut_out_once_and_sigterm_ends_the_job(tmp_path, coco_mini, start_watch):
    source, out = tmp_path / "in", tmp_path / "out"
    copy_photos(coco_mini, source, 1)
    watcher = start_watch(source, out, embedded(tmp_path))
    new = photo_sources(coco_mini)[5]
    shutil.copyfile(new, source / "arrived.jpg")
    # Neither our temporaries nor a download in progress is an input.
    (source / ".hidden.jpg").write_bytes(new.read_bytes())
    (source / "arrived.jpg.part").write_bytes(b"partial")
    wait_for_file(out / "arrived.png", watcher)
    settle_a_while()

    assert watcher.signal(signal.SIGTERM) == 0, watcher.log()
    job = watcher.status()
    assert job["state"] == "succeeded", watcher.log()
    assert job["items"] == {"succeeded": 2}
    arrived = [i for i in job["item_list"] if i["source_path"].endswith("arrived.jpg")]
    assert len(arrived) == 1 and arrived[0]["state"] == "succeeded"
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        [Path(copy.name).with_suffix(".png").name for copy in source.rglob("0*.jpg")]
        + ["arrived.png"]
    )
    with Image.open(new) as original, Image.open(out / "arrived.png") as cut:
        assert cut.size == original.size and cut.mode == "RGBA"
    assert "added 1 image: arrived.jpg" in watcher.log()


def test_a_file_is_read_only_once_complete_and_sigint_ends_the_job(
    tmp_path, coco_mini, start_watch
):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    photo = photo_sources(coco_mini)[3]
    # The same photo, complete from the start, as the reference cut-out.
    shutil.copyfile(photo, source / "reference.jpg")
    watcher = start_watch(source, out, embedded(tmp_path))
    wait_for_file(out / "reference.png", watcher)

    data = photo.read_bytes()
    with open(source / "slow.jpg", "wb") as writer:
        writer.write(data[: len(data) // 2])
        writer.flush()
        time.sleep(4 * SETTLE_S)  # longer than the settle period, file still open
        assert not (out / "slow.png").exists()
        writer.write(data[len(data) // 2 :])
    wait_for_file(out / "slow.png", watcher)
    settle_a_while()

    assert watcher.signal(signal.SIGINT) == 0, watcher.log()
    job = watcher.status()
    assert job["state"] == "succeeded", watcher.log()
    assert job["items"] == {"succeeded": 2}  # no failed (half-read) item, no second one
    with Image.open(out / "reference.png") as ref, Image.open(out / "slow.png") as cut:
        difference = np.abs(np.asarray(ref, np.int16) - np.asarray(cut, np.int16))
    assert difference.max() <= 2


def test_changed_file_replaces_its_output(tmp_path, coco_mini, start_watch):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(source / "a.jpg")
    watcher = start_watch(source, out, embedded(tmp_path))
    wait_for_file(out / "a.png", watcher)
    first = (out / "a.png").stat().st_mtime_ns

    Image.new("RGB", (50, 20), (10, 200, 10)).save(source / "a.jpg")
    wait_until(lambda: Image.open(out / "a.png").size == (50, 20), STARTUP_S, "the new output")
    assert (out / "a.png").stat().st_mtime_ns != first
    assert watcher.signal(signal.SIGTERM) == 0, watcher.log()
    job = watcher.status()
    assert job["state"] == "succeeded" and job["items"] == {"succeeded": 1}


def test_a_killed_watcher_does_not_leave_its_job_open(tmp_path, start_watch):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()  # nothing yet: a watched job may start empty
    watcher = start_watch(source, out, embedded(tmp_path))
    assert watcher.status()["state"] == "queued"
    watcher.signal(signal.SIGKILL)

    job = watcher.status()  # `status` marks lost work first
    assert job["state"] == "succeeded" and job["items"] == {}
    assert "watch" not in job["params"]
