"""``unetbg serve`` as a client sees it: a real server process, real photos, httpx.

Embedded mode here (jobs run in the server); broker mode, with a real Redis and Celery
worker, in ``test_serve_broker.py``.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from api_server import MAX_UPLOAD_BYTES, copy_jpegs, server_env
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from service_fixtures import VENV_BIN, free_port


def samples(client: httpx.Client) -> dict[str, list]:
    """``/metrics`` parsed: sample name -> its samples."""
    response = client.get("/metrics")
    assert response.status_code == 200
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def total(found: dict[str, list], name: str) -> float:
    return sum(s.value for s in found.get(name, []))


def wait_final(client: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(0.3)


def test_remove_answers_the_image_and_refuses_with_reasons(server, coco_root, tmp_path):
    photo = copy_jpegs(coco_root, tmp_path, 1)[0]
    size = Image.open(photo).size
    key_file = Path(server.env["UNETBG_DATA_DIR"]) / "api-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # generated on loopback
    assert "api-key" in server.log.read_text()  # and named on stderr

    with server.client() as client:
        done = client.post("/api/remove", files={"file": photo.read_bytes()})
        assert done.status_code == 200, done.text
        assert done.headers["content-type"] == "image/png"
        cutout = Image.open(io.BytesIO(done.content))
        assert (cutout.mode, cutout.size) == ("RGBA", size)
        # rembg's "only mask", as a query parameter like rembg's clients send it.
        mask = client.post("/api/remove?om=true", files={"file": photo.read_bytes()})
        assert Image.open(io.BytesIO(mask.content)).mode == "L"
        jpeg = client.post(
            "/api/remove",
            files={"file": photo.read_bytes()},
            data={"kind": "color", "color": "#00ff00", "format": "jpeg"},
        )
        assert jpeg.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(jpeg.content)).size == size

        refusals = {
            "not an image": client.post("/api/remove", files={"file": b"plain text, no image"}),
            "too large": client.post("/api/remove", files={"file": os.urandom(MAX_UPLOAD_BYTES + 1)}),
            "bad option": client.post(
                "/api/remove", files={"file": photo.read_bytes()}, data={"format": "jpeg"}
            ),
            "path outside the roots": client.post(
                "/api/remove", files={"file": photo.read_bytes()}, data={"checkpoint": "/etc/passwd"}
            ),
        }  # fmt: skip
        statuses = {why: (r.status_code, r.json()["detail"]) for why, r in refusals.items()}
        assert statuses["not an image"] == (400, "not a recognised image format")
        assert (
            statuses["too large"][0] == 413 and f"{MAX_UPLOAD_BYTES:,}" in statuses["too large"][1]
        )
        assert statuses["bad option"][0] == 400 and "JPEG has no alpha" in statuses["bad option"][1]
        assert statuses["path outside the roots"][0] == 403
        assert client.post("/api/remove", files={"file": photo.read_bytes()}).status_code == 200

    for key in (None, "wrong-key"):
        with server.client(key) as client:
            refused = client.post("/api/remove", files={"file": photo.read_bytes()})
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert client.get("/metrics").status_code == 401
            assert client.get("/healthz").status_code == 200  # the one open endpoint


def test_concurrent_requests_share_one_model_load(server, coco_root, tmp_path):
    photos = copy_jpegs(coco_root, tmp_path, 4)
    with server.client() as client:

        def remove(i: int) -> tuple[int, tuple[int, int], tuple[int, int]]:
            photo = photos[i % len(photos)]
            answer = client.post("/api/remove", files={"file": photo.read_bytes()})
            got = Image.open(io.BytesIO(answer.content)).size if answer.status_code == 200 else None
            return answer.status_code, got, Image.open(photo).size

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(remove, range(20)))
        assert [status for status, _, _ in results] == [200] * 20
        assert all(got == want for _, got, want in results)
        found = samples(client)
    assert total(found, "unetbg_model_loads_total") == 1  # this module's requests, all
    assert total(found, "unetbg_model_load_seconds") > 0
    latency = [
        s for s in found["unetbg_request_duration_seconds_count"]
        if s.labels["route"] == "/api/remove" and s.labels["status"] == "200"
    ]  # fmt: skip
    assert latency and latency[0].value >= 20


def test_remove_dir_job_is_the_clis_document_and_moves_the_metrics(server, coco_root):
    copy_jpegs(coco_root, server.root / "in", 5)
    body = {"kind": "remove_dir", "input_dir": str(server.root / "in"), "output_kind": "mask"}
    body |= {"flip_average": True, "refine_edges": True}
    with server.client() as client:
        before = samples(client)
        created = client.post("/api/jobs", json=body | {"output_dir": str(server.root / "out")})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        job = wait_final(client, job_id)
        assert job["state"] == "succeeded" and job["items"] == {"succeeded": 5}, job
        assert job["params"]["flip_average"] is job["params"]["refine_edges"] is True
        assert len(list((server.root / "out").glob("*.png"))) == 5

        status = server.unetbg("status", job_id, "--items", "all", "--json")
        assert status.returncode == 0, status.stderr
        # JSON Lines: the job as GET /api/jobs/ID, its items as GET …/items pages them.
        document, *listed = map(json.loads, status.stdout.splitlines())
        assert client.get(f"/api/jobs/{job_id}").json() == document
        page = client.get(f"/api/jobs/{job_id}/items", params={"limit": 3}).json()
        rest = client.get(f"/api/jobs/{job_id}/items", params={"cursor": page["next_cursor"]})
        assert page["items"] + rest.json()["items"] == listed and len(listed) == 5
        assert rest.json()["next_cursor"] is None
        small_job = client.get(f"/api/jobs/{job_id}", params={"items": "all"}).json()
        assert small_job == document | {"item_list": listed}
        listed = client.get("/api/jobs", params={"kind": "remove_dir", "state": "succeeded"})
        assert job_id in [j["id"] for j in listed.json()]
        cli_list = json.loads(server.unetbg("jobs", "--kind", "remove_dir", "--json").stdout)
        assert listed.json() == [j for j in cli_list if j["state"] == "succeeded"]
        checkpoints = client.get("/api/checkpoints").json()
        assert checkpoints == json.loads(server.unetbg("checkpoints", "--json").stdout)

        after = samples(client)
        for name in ("unetbg_images_processed_total",):
            assert total(after, name) - total(before, name) == 5
        jobs_gauge = {
            (s.labels["kind"], s.labels["state"]): s.value for s in after["unetbg_jobs"]
        }  # fmt: skip
        assert jobs_gauge[("remove_dir", "succeeded")] >= 1
        assert total(after, "unetbg_images_per_second") > 0
        assert "unetbg_queue_depth" not in after  # embedded: no broker queues


def test_paths_must_lie_under_the_roots(server, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (server.root / "link").symlink_to(outside)  # inside by name, outside in fact
    cases = {
        "outside": {"input_dir": str(outside), "output_dir": str(server.root / "o")},
        "via a link": {"input_dir": str(server.root / "link"), "output_dir": str(server.root / "o")},
        "up and out": {"input_dir": f"{server.root}/../..", "output_dir": str(server.root / "o")},
        "output outside": {"input_dir": str(server.root), "output_dir": str(outside / "o")},
    }  # fmt: skip
    with server.client() as client:
        for why, paths in cases.items():
            refused = client.post("/api/jobs", json={"kind": "remove_dir", **paths})
            assert refused.status_code == 403, (why, refused.text)
            assert "outside the API roots" in refused.json()["detail"], why
        evaluate = {"kind": "evaluate", "checkpoint": "best", "coco_root": str(outside)}
        assert client.post("/api/jobs", json=evaluate).status_code == 403
        train = {"kind": "train", "preset": "smoke", "data": [f"masks:{outside}"]}
        assert client.post("/api/jobs", json=train).status_code == 403
        relative = {"kind": "remove_dir", "input_dir": "in", "output_dir": "out"}
        assert client.post("/api/jobs", json=relative).status_code == 400
        unknown = client.get("/api/jobs/nosuchjob")
        assert unknown.status_code == 404 and "no job 'nosuchjob'" in unknown.json()["detail"]
        typo = client.post(
            "/api/jobs", json={"kind": "train", "coco_root": str(server.root), "epochz": 1}
        )
        assert typo.status_code == 400 and "epochz" in typo.json()["detail"]
    assert not (outside / "o").exists()


def submit_many(server, client: httpx.Client, coco_root: Path, count: int) -> str:
    """A remove-dir job over ``count`` photos copied under the server's root; its id."""
    copy_jpegs(coco_root, server.root / "many", count)
    body = {
        "kind": "remove_dir",
        "input_dir": str(server.root / "many"),
        "output_dir": str(server.root / "many-out"),
    }
    return client.post("/api/jobs", json=body).json()["id"]


def test_cancel_over_http(server, coco_root):
    with server.client() as client:
        job_id = submit_many(server, client, coco_root, 40)
        cancelled = client.post(f"/api/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"]
        job = wait_final(client, job_id)
    assert job["state"] == "cancelled", job
    assert job["items"].get("cancelled", 0) > 0 and job["progress_done"] < 40


def test_no_key_means_no_listening_off_loopback(tmp_path, checkpoint):
    port = free_port()
    refused = subprocess.run(
        [str(VENV_BIN / "unetbg"), "serve", "--host", "0.0.0.0", "--port", str(port)],
        env=server_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert "refusing to listen on 0.0.0.0 without an API key" in refused.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert not (tmp_path / "data" / "api-key").exists()


def test_stopping_the_server_cancels_the_jobs_it_runs(tmp_path, checkpoint, coco_root):
    """Without a broker the server runs its jobs itself: SIGTERM ends them as cancelled,
    with their counts, instead of leaving them 'running' for nobody."""
    import signal

    from api_server import serve

    servers = serve(tmp_path, checkpoint, server_env(tmp_path / "data", UNETBG_CHUNK_SIZE="2"))
    server = next(servers)
    try:
        with server.client() as client:
            job_id = submit_many(server, client, coco_root, 60)
            deadline = time.monotonic() + 60
            while client.get(f"/api/jobs/{job_id}").json()["progress_done"] < 1:
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.05)
        os.killpg(server.proc.pid, signal.SIGTERM)
        # uvicorn shuts down, then ends by the signal it got (status -15), as is usual.
        assert server.proc.wait(60) in (0, -signal.SIGTERM), server.log.read_text()[-3000:]
        assert "Application shutdown complete" in server.log.read_text()
    finally:
        servers.close()
    status = server.unetbg("status", job_id, "--json")
    job = json.loads(status.stdout)
    assert job["state"] == "cancelled", job
    assert job["items"].get("cancelled", 0) > 0 and job["progress_done"] < 60
    assert job["progress_done"] == job["items"].get("succeeded", 0)
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]


def test_a_full_model_queue_answers_503_and_the_rest_are_served(tmp_path, coco_root):
    """``--queue-size 1``: while the model works on one image (a slow one: letterbox 768
    on one thread) and one more waits, further requests are refused at once with 503 and
    ``Retry-After``, never queued without bound; every accepted one is answered, and the
    server serves on afterwards."""
    from api_server import serve

    from service_fixtures import make_checkpoint

    slow = make_checkpoint(tmp_path / "slow.pth", image_size=768)
    env = server_env(tmp_path / "data")
    servers = serve(tmp_path, slow, env, "--queue-size", 1, "--batch-size", 1)
    server = next(servers)
    try:
        photo = sorted((coco_root / "val2017").glob("*.jpg"))[0].read_bytes()

        def post(_):
            with server.client() as client:
                return client.post("/api/remove", files={"file": ("p.jpg", photo)})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(8)))
        statuses = sorted(a.status_code for a in answers)
        assert set(statuses) == {200, 503}, statuses
        assert statuses.count(200) <= 3  # one at the model, one waiting (one just taken)
        for busy in (a for a in answers if a.status_code == 503):
            assert int(busy.headers["Retry-After"]) > 0 and "busy" in busy.json()["detail"]
        assert post(None).status_code == 200
    finally:
        servers.close()
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]


def test_item_pages_over_http_refuse_bad_parameters_and_strangers(server):
    # A job of 250 items recorded straight into the server's database (as a folder's
    # planning records them), 1 in 5 failed: three pages of 100 at most.
    from unetbg.db import Job, JobItem
    from unetbg.jobs import db_session
    from unetbg.jobs.records import recount
    from unetbg.settings import get_settings

    with db_session(get_settings(server.env)) as session:
        session.add(Job(id="paged0000001", kind="remove_dir", progress_total=250))
        session.flush()
        session.add_all(
            JobItem(
                job_id="paged0000001",
                source_path=f"/in/{n:03d}.jpg",
                state="failed" if n % 5 == 0 else "succeeded",
                error="cannot identify image file" if n % 5 == 0 else None,
            )
            for n in range(250)
        )
        session.flush()
        recount(session, "paged0000001")  # rows written by hand: their counters follow
    url = "/api/jobs/paged0000001/items"
    with server.client() as client:
        pages, cursor = [], None
        while True:
            params = {} if cursor is None else {"cursor": cursor}
            answer = client.get(url, params=params)
            assert answer.status_code == 200, answer.text
            pages.append(answer.json()["items"])
            if (cursor := answer.json()["next_cursor"]) is None:
                break
        assert [len(p) for p in pages] == [100, 100, 50]
        ids = [i["id"] for p in pages for i in p]
        assert ids == sorted(set(ids))
        assert [i["source_path"] for p in pages for i in p] == [
            f"/in/{n:03d}.jpg" for n in range(250)
        ]

        failed = client.get(url, params={"state": "failed", "limit": 1000}).json()
        assert len(failed["items"]) == 50 and failed["next_cursor"] is None
        assert {i["error"] for i in failed["items"]} == {"cannot identify image file"}
        # The job document carries counts, not items, unless asked.
        job = client.get("/api/jobs/paged0000001").json()
        assert job["items"] == {"failed": 50, "succeeded": 200} and "item_list" not in job

        for params, says in [
            ({"state": "pending"}, "'failed', 'no-person' or 'all'"),
            ({"limit": 0}, "greater than or equal to 1"),
            ({"limit": 1001}, "less than or equal to 1000"),
            ({"cursor": "abc"}, "valid integer"),
            ({"cursor": -1}, "greater than or equal to 0"),
        ]:
            refused = client.get(url, params=params)
            assert refused.status_code == 422 and says in refused.text, (params, refused.text)
        missing = client.get("/api/jobs/nosuchjob000/items")
        assert missing.status_code == 404 and "no job 'nosuchjob000'" in missing.json()["detail"]
    with server.client(None) as stranger:
        assert stranger.get(url).status_code == 401


def test_a_busy_database_is_a_503_that_says_why_and_nothing_changes(server):
    from db_locks import write_lock
    from unetbg.settings import get_settings

    settings = get_settings(server.env)
    with server.client() as client:
        before = client.get("/api/jobs")
        assert before.status_code == 200, before.text
        with write_lock(settings.database_url):
            # Waits out SQLite's busy timeout (30 s), then refuses: no traceback, no 500.
            busy = client.get("/api/jobs", timeout=120)
        assert busy.status_code == 503, busy.text
        assert busy.json()["detail"].startswith("the job database is busy")
        assert busy.headers["retry-after"] == "10"
        after = client.get("/api/jobs")
        assert after.status_code == 200 and after.json() == before.json()
