"""``unetbg serve`` configured with a broker that does not answer: a job is refused with
503 naming the broker, and nothing is recorded (the CLI's exit status 2 over HTTP)."""

from __future__ import annotations

import pytest
from api_server import copy_jpegs, serve, server_env

from service_fixtures import free_port


@pytest.fixture
def dead_broker_server(checkpoint, tmp_path):
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    env = server_env(tmp_path / "data", UNETBG_BROKER_URL=url)
    for server in serve(tmp_path, checkpoint, env):
        yield server, url


def test_a_job_for_an_unreachable_broker_is_refused_and_not_recorded(dead_broker_server, coco_root):
    server, url = dead_broker_server
    copy_jpegs(coco_root, server.root / "in", 2)
    body = {
        "kind": "remove_dir",
        "input_dir": str(server.root / "in"),
        "output_dir": str(server.root / "out"),
    }
    with server.client() as client:
        refused = client.post("/api/jobs", json=body)
        assert refused.status_code == 503, refused.text
        detail = refused.json()["detail"]
        assert url.replace("secret", "***") in detail and "secret" not in detail
        assert "nothing was recorded" in detail
        assert client.get("/api/jobs").json() == []
