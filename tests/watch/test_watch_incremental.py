"""``remove-dir --watch`` plans each new or changed file on its own (issue 23): the job's
first scan is its one pass over the whole folder, yet the names it gives agree with a
whole-folder plan, clashes with the files already there included. Real watching
processes, real files, a real (random-weight) model, embedded mode."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from PIL import Image
from watch_process import wait_for_file

from service_fixtures import STARTUP_S, wait_until
from unetbg.removal import plan_folder

#: Files already done in the folder the first test watches (their outputs exist).
DONE = 300


def embedded(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
    return env | {"UNETBG_DATA_DIR": str(tmp_path / "data")}


def mark_unread(folder: Path) -> int:
    """Set ``folder``'s access time back, before its modification time: the next
    listing of it moves it forward (relatime, the Linux default). Returns it."""
    info = os.stat(folder)
    os.utime(folder, ns=(info.st_mtime_ns - 100 * 10**9, info.st_mtime_ns))
    return os.stat(folder).st_atime_ns


def require_listing_marks(tmp_path: Path) -> None:
    probe = tmp_path / "atime-probe"
    probe.mkdir()
    before = mark_unread(probe)
    os.listdir(probe)
    if os.stat(probe).st_atime_ns == before:
        pytest.skip("this file system does not record when a folder is read (noatime)")


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_a_new_file_is_planned_without_listing_the_rest_of_the_folder(tmp_path, start_watch):
    require_listing_marks(tmp_path)
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "done").mkdir(parents=True)
    (out / "done").mkdir(parents=True)
    for n in range(DONE):  # skipped by the first scan: their outputs exist
        (source / "done" / f"{n:04d}.jpg").touch()
        (out / "done" / f"{n:04d}.png").touch()
    watcher = start_watch(source, out, embedded(tmp_path))
    unread = mark_unread(source / "done")

    Image.new("RGB", (40, 30), (200, 10, 10)).save(source / "arrived.jpg")
    wait_for_file(out / "arrived.png", watcher)
    Image.new("RGB", (30, 40), (10, 10, 200)).save(source / "arrived.jpg")
    wait_until(
        lambda: size_of(out / "arrived.png") == (30, 40), STARTUP_S, "the changed file's output"
    )

    # A whole-folder plan lists done/ for every batch; planning the file alone does not.
    assert os.stat(source / "done").st_atime_ns == unread, "the watch listed done/ again"
    assert watcher.signal(signal.SIGTERM) == 0, watcher.log()
    job = watcher.status()
    assert job["state"] == "succeeded", watcher.log()
    assert job["items"] == {"skipped": DONE, "succeeded": 1}
    (arrived,) = [i for i in job["item_list"] if i["state"] == "succeeded"]
    assert arrived["source_path"] == str(source / "arrived.jpg")
    assert arrived["output_path"] == str(out / "arrived.png")


def test_new_and_changed_files_get_the_names_a_whole_folder_plan_gives(tmp_path, start_watch):
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(source / "a.jpg")
    Image.new("RGB", (20, 20), (10, 200, 10)).save(source / "sub" / "b.jpg")
    (source / "sub" / "d.png").mkdir()
    Image.new("RGB", (20, 20), (10, 200, 10)).save(source / "sub" / "d.png" / "e.jpg")
    watcher = start_watch(source, out, embedded(tmp_path))
    wait_for_file(out / "a.png", watcher)

    # a.png clashes with a.jpg, which is in the folder but not among the new files:
    # both keep their full names, so a.jpg's cut-out is not written over.
    Image.new("RGB", (50, 20), (10, 10, 200)).save(source / "a.png")
    Image.new("RGB", (16, 24), (90, 90, 90)).save(source / "sub" / "B.png")
    # d.jpg's output may not take the name of the folder d.png/, which holds outputs.
    Image.new("RGB", (24, 16), (90, 90, 90)).save(source / "sub" / "d.jpg")
    wait_for_file(out / "a.png.png", watcher)
    wait_for_file(out / "sub" / "B.png.png", watcher)
    wait_for_file(out / "sub" / "d.jpg.png", watcher)
    # A change is planned alone too, and replaces the output it had.
    Image.new("RGB", (60, 10), (10, 10, 200)).save(source / "a.png")
    wait_until(
        lambda: size_of(out / "a.png.png") == (60, 10), STARTUP_S, "the changed file's output"
    )

    assert size_of(out / "a.png") == (40, 30)
    assert size_of(out / "sub" / "B.png.png") == (16, 24)
    assert watcher.signal(signal.SIGTERM) == 0, watcher.log()
    job = watcher.status()
    assert job["state"] == "succeeded", watcher.log()
    assert job["items"] == {"succeeded": 6}  # one item a file, the changed one included
    whole = {str(plan.source): str(plan.output) for plan in plan_folder(source, out)}
    recorded = {item["source_path"]: item["output_path"] for item in job["item_list"]}
    added = [source / "a.png", source / "sub" / "B.png", source / "sub" / "d.jpg"]
    assert {str(p): recorded[str(p)] for p in added} == {str(p): whole[str(p)] for p in added}
