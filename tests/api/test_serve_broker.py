"""``unetbg serve`` with a broker: jobs go to a real Celery worker through Redis, and
``/metrics`` shows the broker's queues."""

from __future__ import annotations

import time

import pytest
from api_server import copy_jpegs, serve, server_env
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.services


@pytest.fixture
def broker_server(cluster, checkpoint, tmp_path):
    env = server_env(cluster.data_dir) | cluster.env
    yield from serve(tmp_path, checkpoint, env)


def test_a_job_over_http_runs_on_the_worker(broker_server, coco_root, cluster):
    server = broker_server
    copy_jpegs(coco_root, server.root / "in", 3)
    body = {
        "kind": "remove_dir",
        "input_dir": str(server.root / "in"),
        "output_dir": str(server.root / "out"),
    }
    with server.client() as client:
        created = client.post("/api/jobs", json=body)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        deadline = time.monotonic() + 120
        while (job := client.get(f"/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, cluster.log_tail()
            time.sleep(0.5)
        metrics = client.get("/metrics").text
    assert job["state"] == "succeeded" and job["items"] == {"succeeded": 3}, job
    assert job["worker_host"] and len(list((server.root / "out").glob("*.png"))) == 3
    depths = {
        s.labels["queue"]: s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "unetbg_queue_depth"
    }
    assert depths == {"train": 0, "infer": 0}
