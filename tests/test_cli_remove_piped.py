"""``unetbg remove -`` (a piped image) never skips an existing output as done: a piped
image has no name to tell it is the image that made ``stdin.png``. The real command in a
subprocess, a real photo on its stdin, the tests' small checkpoint."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from PIL import Image

from service_fixtures import VENV_BIN, checkpoint, photos  # noqa: F401  (fixtures)


def remove_piped(photo: Path, out: Path, model: Path, tmp_path: Path, *extra: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
    env |= {"UNETBG_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    with open(photo, "rb") as stdin:
        return subprocess.run(
            [str(VENV_BIN / "unetbg"), "remove", "-", "-o", str(out), "--checkpoint", str(model), *extra],
            stdin=stdin, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip


def test_piped_image_over_an_existing_output_fails_and_keeps_it(photos, checkpoint, tmp_path):  # noqa: F811
    photo = next(photos.glob("*.jpg"))
    out = tmp_path / "out"
    out.mkdir()
    earlier = out / "stdin.png"
    Image.new("RGBA", (8, 8), (1, 2, 3, 4)).save(earlier)  # another image's cut-out
    before = earlier.read_bytes()

    refused = remove_piped(photo, out, checkpoint, tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert f"{earlier} exists" in refused.stderr and "--overwrite" in refused.stderr
    assert "model on" not in refused.stderr  # told before the model loaded
    assert refused.stdout == "" and earlier.read_bytes() == before

    replaced = remove_piped(photo, out, checkpoint, tmp_path, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.strip() == str(earlier)
    assert Image.open(earlier).size == Image.open(photo).size
