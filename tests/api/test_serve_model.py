"""Which model ``POST /api/remove`` ran, as a client sees it: the ``X-Unetbg-Model``
header of a real ``unetbg serve`` (``--checkpoint best``), and checkpoint values that
name no checkpoint answered with one clear sentence."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from api_server import copy_jpegs, serve, server_env

from service_fixtures import make_carded_checkpoint, make_checkpoint
from unetbg import jobs
from unetbg.backends import AUTO_ORDER

#: What ``--backend auto`` runs on this machine's CPU: the first installed.
AUTO_CHOICE = next(n for n in AUTO_ORDER["cpu"] if n == "torch" or importlib.util.find_spec(n))


@pytest.fixture
def best_server(tmp_path, monkeypatch):
    """A server started with ``--checkpoint best`` whose default model's card records
    coco-mini 0.40; this process shares its job database (to register checkpoints)."""
    default = make_carded_checkpoint(tmp_path / "default.pth", {"coco-mini": 0.40})
    env = server_env(tmp_path / "data", UNETBG_DEFAULT_MODEL=str(default))
    for name, value in env.items():
        if name.startswith("UNETBG_"):
            monkeypatch.setenv(name, value)
    yield from serve(tmp_path, "best", env)


def _register(path: Path, coco_mini_iou: float) -> int:
    make_checkpoint(path)
    with jobs.db_session() as session:
        row = jobs.register_checkpoint(
            session, None, path, 1, {"iou": coco_mini_iou, "coco-mini_iou": coco_mini_iou}, True
        )
        session.flush()
        return row.id


def test_every_cutout_names_the_model_that_made_it(best_server, coco_root, tmp_path):
    photo = copy_jpegs(coco_root, tmp_path / "photos", 1)[0].read_bytes()
    default = str((tmp_path / "default.pth").resolve())
    digest = jobs.checkpoints.file_digest(default)[:12]
    worse = _register(tmp_path / "run a" / "best_model.pth", 0.10)
    with best_server.client() as client:
        # A worse registered checkpoint: `best` stays the default.
        answer = client.post("/api/remove", files={"file": photo})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-unetbg-model"] == f"default sha256={digest} path={default}"
        # The server runs --backend auto: the answer says what auto chose.
        assert answer.headers["x-unetbg-backend"] == AUTO_CHOICE

        named = client.post("/api/remove", files={"file": photo}, data={"checkpoint": str(worse)})
        assert named.status_code == 200, named.text
        spaced = str((tmp_path / "run a" / "best_model.pth").resolve()).replace(" ", "%20")
        assert named.headers["x-unetbg-model"] == f"id={worse} path={spaced}"

        better = _register(tmp_path / "run-b" / "best_model.pth", 0.60)
        chosen = client.post("/api/remove", files={"file": photo})
        assert chosen.status_code == 200, chosen.text
        assert chosen.headers["x-unetbg-model"].startswith(f"id={better} path=")

        refusals = {
            spec: client.post("/api/remove", files={"file": photo}, data={"checkpoint": spec})
            for spec in ("nope", "999")
        }
    assert refusals["nope"].status_code == 400
    assert refusals["nope"].json()["detail"] == (
        "no checkpoint 'nope': checkpoint takes best, default, a registered checkpoint id "
        "(GET /api/checkpoints) or an absolute path on the server"
    )
    assert refusals["999"].status_code == 400
    assert "no registered checkpoint with id 999" in refusals["999"].json()["detail"]
