"""``--backend auto`` (the default): the fastest backend installed here runs, the
exported graph is cached on disk, and a process without a backend's package falls back
to the next one, saying so, where a backend named outright is refused.

A backend's package is hidden the way a machine without it looks: a real ``unetbg``
process whose ``sys.modules`` maps the package to ``None`` (``import`` fails,
``importlib.util.find_spec`` answers ``None``), so nothing of ours is replaced.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inference_fixtures import coco_photos, mask_iou, tiny_checkpoint
from unetbg.backends import AUTO_ORDER
from unetbg.inference import ModelInference

#: What auto picks on this machine's CPU: the first of the order that is installed.
EXPECTED = next(n for n in AUTO_ORDER["cpu"] if n == "torch" or importlib.util.find_spec(n))
#: How auto says it fell back to torch with every exported runtime hidden.
FELL_BACK = "; ".join(
    ["auto: fastest installed for cpu"]
    + [f"{n} not installed" for n in AUTO_ORDER["cpu"][: AUTO_ORDER["cpu"].index("torch")]]
)
#: Runs the real CLI with the backends' packages hidden (argv: hidden names, ``--``, args).
HIDING = (
    "import sys; i = sys.argv.index('--'); "
    "sys.modules.update(dict.fromkeys(sys.argv[1:i])); "
    "sys.argv = ['unetbg', *sys.argv[i + 1:]]; "
    "from unetbg.cli import main; main()"
)


@pytest.fixture
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A data dir of this test's own: an empty export cache."""
    monkeypatch.setenv("UNETBG_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def _unetbg(data_dir: Path, hidden: tuple[str, ...], *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "UNETBG_BROKER_URL"}
    env["UNETBG_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-c", HIDING, *hidden, "--", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_auto_runs_the_fastest_installed(checkpoint, data_dir) -> None:
    chosen = ModelInference(checkpoint, device="cpu")
    assert chosen.run.backend == "auto" and chosen.backend_name == EXPECTED
    assert chosen.backend_said.startswith(f"backend: {EXPECTED} (auto: fastest installed for cpu")


def test_an_exported_backend_caches_its_graph(checkpoint, data_dir) -> None:
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed (pip install 'unetbg[onnxruntime]')")
    first = ModelInference(checkpoint, device="cpu", backend="onnxruntime")
    assert first.backend_said == "backend: onnxruntime (graph exported and cached)"
    (graph,) = (data_dir / "exported").glob("*.onnx")
    written = graph.stat()

    # The next load (a worker's next model, the next process) reads the file as it is.
    again = ModelInference(checkpoint, device="cpu", backend="onnxruntime")
    assert again.backend_said == "backend: onnxruntime (graph cached)"
    assert graph.stat().st_mtime_ns == written.st_mtime_ns

    # A file cut short (a full disk, a copy interrupted) is exported again, not fatal.
    graph.write_bytes(graph.read_bytes()[: written.st_size // 2])
    rebuilt = ModelInference(checkpoint, device="cpu", backend="onnxruntime")
    assert rebuilt.backend_said == "backend: onnxruntime (graph exported and cached)"
    assert graph.stat().st_size == written.st_size
    assert [p.name for p in graph.parent.iterdir()] == [graph.name]  # no temporaries left


def test_auto_masks_agree_with_torch_on_real_photos(coco_mini: Path, data_dir) -> None:
    """The shipped model on real photos: what auto runs gives torch's masks."""
    photos = coco_photos(coco_mini, 8)
    torch_masks = ModelInference(device="cpu", backend="torch").predict_arrays(photos)
    auto = ModelInference(device="cpu", backend="auto")
    assert auto.backend_name == EXPECTED
    assert mask_iou(torch_masks, auto.predict_arrays(photos)) >= 0.98


def test_auto_without_the_runtimes_falls_back_to_torch(checkpoint, coco_mini, tmp_path) -> None:
    photo = tmp_path / "in" / "photo.jpg"
    photo.parent.mkdir()
    photo.write_bytes(sorted((coco_mini / "val2017").glob("*.jpg"))[0].read_bytes())
    hidden = ("onnxruntime", "openvino")
    args = ["--checkpoint", str(checkpoint), "--device", "cpu", "--kind", "mask"]

    # `remove` runs, says what it fell back to, and writes the mask.
    removed = _unetbg(
        tmp_path / "data", hidden, "remove", str(photo), "-o", str(tmp_path / "a"), *args
    )
    assert removed.returncode == 0, removed.stderr
    assert f"backend: torch ({FELL_BACK})" in removed.stderr
    assert (tmp_path / "a" / f"{photo.stem}.png").is_file()
    assert not (tmp_path / "data" / "exported").exists()  # nothing exported for torch

    # A job (no broker: this process runs it) records auto and succeeds on torch.
    job = _unetbg(
        tmp_path / "data", hidden, "remove-dir", str(photo.parent), str(tmp_path / "b"), *args,
        "--wait", "--json",
    )  # fmt: skip
    assert job.returncode == 0, job.stderr
    assert f"backend: torch ({FELL_BACK})" in job.stderr  # said here too: this process ran it
    view = json.loads(job.stdout)
    assert view["state"] == "succeeded" and view["params"]["backend"] == "auto", view

    # Named outright, a missing backend is still refused before anything is recorded.
    named = _unetbg(
        tmp_path / "data", hidden, "remove-dir", str(photo.parent), str(tmp_path / "c"), *args,
        "--backend", "onnxruntime",
    )  # fmt: skip
    assert named.returncode == 2
    assert "backend 'onnxruntime' needs the onnxruntime package" in named.stderr
    assert not (tmp_path / "c").exists()
    listed = _unetbg(tmp_path / "data", hidden, "jobs", "--json")
    assert len(json.loads(listed.stdout)) == 1, listed.stdout  # the auto job only
