"""``unetbg remove-dir IN OUT --watch`` with a broker: the watching process stays the
submitter in the foreground and a real Celery worker cuts out what it adds."""

from __future__ import annotations

import shutil
import signal

import pytest
from watch_process import settle_a_while, wait_for_file

from service_fixtures import copy_photos

pytestmark = pytest.mark.services


def test_watch_through_a_worker(tmp_path, coco_mini, cluster, start_watch):
    source, out = tmp_path / "in", tmp_path / "out"
    copy_photos(coco_mini, source, 2)
    watcher = start_watch(source, out, cluster.cli_env())
    shutil.copyfile(sorted((coco_mini / "val2017").glob("*.jpg"))[6], source / "arrived.jpg")
    wait_for_file(out / "arrived.png", watcher, timeout=120)
    settle_a_while()

    assert watcher.signal(signal.SIGTERM) == 0, watcher.log() + cluster.log_tail()
    job = watcher.status()
    assert job["state"] == "succeeded" and job["items"] == {"succeeded": 3}
    assert job["worker_host"] and not job["worker_host"].endswith(f":{watcher.proc.pid}")
    # The first pass is chunk 0 (UNETBG_CHUNK_SIZE=2); the new photo came as chunk 1.
    assert sorted(i["chunk"] for i in job["item_list"]) == [0, 0, 1]
    assert f"{watcher.job_id}-chunk0001" in cluster.log_tail(400)
    assert len(list(out.rglob("*.png"))) == 3
