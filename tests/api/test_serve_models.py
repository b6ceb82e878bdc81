"""``unetbg serve``'s loaded models: one cache keyed by the checkpoint file's identity, so
a checkpoint rewritten in place (a training run saving ``best_model.pth`` again) is
served with its new weights, not the ones loaded before."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from inference_fixtures import rewrite_as_constant, write_photo


def _mask(client, photo: bytes, checkpoint: str) -> np.ndarray:
    answer = client.post(
        "/api/remove", files={"file": photo}, data={"kind": "mask", "checkpoint": checkpoint}
    )
    assert answer.status_code == 200, answer.text
    return np.asarray(Image.open(io.BytesIO(answer.content)))


def test_a_checkpoint_rewritten_in_place_is_served_with_its_new_weights(
    server, checkpoint, tmp_path
):
    path = rewrite_as_constant(checkpoint, server.root / "best_model.pth", person=True)
    photo = write_photo(tmp_path / "p.png", 40, 30).read_bytes()
    with server.client() as client:
        assert (_mask(client, photo, str(path)) == 255).all()
        assert (_mask(client, photo, str(path)) == 255).all()  # the loaded model, again
        rewrite_as_constant(checkpoint, path, person=False)
        assert (_mask(client, photo, str(path)) == 0).all()
        metrics = client.get("/metrics").text
    loads = [
        line
        for line in metrics.splitlines()
        if line.startswith("unetbg_model_loads_total") and "best_model.pth" in line
    ]
    assert loads and loads[0].endswith(" 2.0"), loads  # loaded once per version
