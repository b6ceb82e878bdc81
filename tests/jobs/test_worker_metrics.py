"""``unetbg worker --metrics-port``: the worker's main process serves what its prefork
pool processes recorded, in the Prometheus text format, behind the API key."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service_fixtures import (
    VENV_BIN,
    copy_photos,
    free_port,
    make_cluster,
    stop_process,
    use_cluster,
    wait_until,
)

pytestmark = pytest.mark.services
KEY = "test-key-0123456789"


def scrape(port: int, key: str | None = None) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def samples(text: str) -> dict[tuple, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_worker_metrics_count_a_remove_dir_job(
    tmp_path, coco_mini, checkpoint, redis_server, monkeypatch
):
    import redis

    from unetbg import jobs

    cluster = make_cluster(tmp_path / "cluster", redis_server, UNETBG_API_KEY=KEY)
    # The Redis server is the session's: a message another test left queued would be a
    # task of this worker's too, and the counts below would not be this job's alone.
    redis.Redis.from_url(redis_server.url).flushdb()
    port = free_port()
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [str(VENV_BIN / "unetbg"), "worker", "-Q", "infer", "--metrics-port", str(port)],
            env=cluster.cli_env(OMP_NUM_THREADS="1"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: b" ready." in log.read_bytes() or worker.poll() is not None, 90, "worker"
        )
        assert worker.poll() is None, log.read_text()
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(port)
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            scrape(port, "wrong-key")

        use_cluster(cluster, monkeypatch)
        photos = tmp_path / "photos"
        copy_photos(coco_mini, photos, 3)
        job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint))
        jobs.dispatch(job_id)
        job = jobs.wait_for_job(job_id, poll_s=0.5, timeout_s=180)
        assert job.state == "succeeded", log.read_text()[-3000:]

        figures = samples(scrape(port, KEY))
        assert figures[("unetbg_worker_images_total", (("state", "succeeded"),))] == 3
        # UNETBG_CHUNK_SIZE=2: two chunk tasks.
        task = (("outcome", "success"), ("task", "unetbg.remove_chunk"))
        assert figures[("unetbg_worker_tasks_total", task)] == 2
        assert figures[("unetbg_worker_chunk_seconds_count", ())] == 2
        assert figures[("unetbg_worker_model_load_seconds_count", ())] == 1
    finally:
        stop_process(worker, timeout=30)
    # The values' folder was private to the worker and went with it.
    text = log.read_text()
    folder = Path(text.split("pool values in ", 1)[1].split(")")[0])
    assert folder.name.startswith("unetbg-metrics-") and not folder.exists()


def test_metrics_on_another_interface_need_a_key(tmp_path, redis_server):
    cluster = make_cluster(tmp_path / "cluster", redis_server)
    done = subprocess.run(
        [str(VENV_BIN / "unetbg"), "worker", "--metrics-host", "0.0.0.0", "--metrics-port", "1"],
        env=cluster.cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "UNETBG_API_KEY" in done.stderr and "refusing" in done.stderr


def test_a_cancelled_task_counts_as_cancelled_not_as_a_failure():
    # Issue 20, item 14: the outcome label of a task its job's cancel stopped. The task's
    # exception names it; Celery ignores it (an Ignore: acknowledged, no task-failed event).
    from celery.exceptions import Ignore

    from unetbg.tasks.base import ImagesFailed, JobCancelled
    from unetbg.workers.metrics import task_outcome

    cancelled = JobCancelled("job j: cancelled after 3 image(s)")
    assert isinstance(cancelled, Ignore)
    assert task_outcome("IGNORED", cancelled) == "cancelled"
    assert task_outcome("FAILURE", ImagesFailed("job j: 1 of 2 images failed")) == "failure"
    assert task_outcome("SUCCESS", {"job": "j", "processed": 2}) == "success"
    assert task_outcome("RETRY", None) == "retry"
