"""unetbg.backends and ModelInference(backend=...): every backend agrees with torch.

The exported backends are optional extras; their tests are skipped, saying why, when
the package is not installed (CI installs onnxruntime with the ``dev`` extra).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from inference_fixtures import calibrated_model, coco_photos, mask_iou
from unetbg.backends import BACKENDS, BackendUnavailable, available_backends, create_backend
from unetbg.inference import ModelInference
from unetbg.model import ModelConfig, Preprocessing, build_checkpoint, save_checkpoint

SIZE = 96


@pytest.fixture(scope="module")
def photos(coco_mini: Path) -> list[np.ndarray]:
    return coco_photos(coco_mini, 8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, photos) -> Path:
    """The real architecture with batch norms calibrated on real photos."""
    config = ModelConfig()
    model = calibrated_model(config, photos)
    path = tmp_path_factory.mktemp("backends") / "model.pth"
    save_checkpoint(path, build_checkpoint(model, config, Preprocessing(image_size=SIZE), 0, {}))
    return path


@pytest.fixture(scope="module")
def reference(checkpoint: Path, photos) -> list[np.ndarray]:
    """Probabilities of the plain (unfused) torch model."""
    return ModelInference(checkpoint, device="cpu", fuse=False).predict_arrays(photos)


def _agreement(expected: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float]:
    worst = max(float(np.abs(a - b).max()) for a, b in zip(expected, got, strict=True))
    return worst, mask_iou(expected, got)


def test_fused_torch_backend_agrees(checkpoint: Path, photos, reference) -> None:
    fused = ModelInference(checkpoint, device="cpu", batch_size=3, backend="torch")
    assert fused.backend_name == "torch" and fused.backend.fused
    worst, iou = _agreement(reference, fused.predict_arrays(photos))
    assert worst <= 1e-3 and iou >= 0.995, (worst, iou)


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_exported_backend_agrees(name: str, checkpoint: Path, photos, reference) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed (pip install 'unetbg[{name}]')")
    handle = ModelInference(checkpoint, device="cpu", batch_size=3, backend=name)
    assert handle.backend_name == name
    worst, iou = _agreement(reference, handle.predict_arrays(photos))
    assert worst <= 1e-3 and iou >= 0.995, (worst, iou)


def test_unknown_or_missing_backend_is_explained(checkpoint: Path, monkeypatch) -> None:
    model = torch.nn.Conv2d(3, 1, 1)
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'; choose one of torch"):
        create_backend("tensorrt", model, SIZE, torch.device("cpu"))
    assert "torch" in available_backends() and set(available_backends()) <= set(BACKENDS)
    # A backend whose package is absent names the extra to install.
    monkeypatch.setitem(BACKENDS, "onnxruntime", "no_such_module_for_unetbg")
    with pytest.raises(BackendUnavailable, match=r"pip install 'unetbg\[onnxruntime\]'"):
        ModelInference(checkpoint, device="cpu", backend="onnxruntime")


def test_remove_cli_backend_and_png_level(tmp_path: Path, checkpoint: Path, coco_mini) -> None:
    from click.testing import CliRunner
    from PIL import Image

    from unetbg.cli import main

    photo = sorted((coco_mini / "val2017").glob("*.jpg"))[0]
    runs = {}
    for name, extra in (("torch", []), ("onnxruntime", ["--png-level", "9"])):
        if name != "torch" and importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (pip install 'unetbg[{name}]')")
        out = tmp_path / name
        args = ["remove", str(photo), "-o", str(out), "--checkpoint", str(checkpoint)]
        result = CliRunner().invoke(main, [*args, "--device", "cpu", "--backend", name, *extra])
        assert result.exit_code == 0, result.output
        runs[name] = Path(result.stdout.strip())
    assert "backend: onnxruntime (graph " in result.stderr  # exported, or cached before
    with Image.open(runs["torch"]) as a, Image.open(runs["onnxruntime"]) as b:
        alpha_a = np.asarray(a)[..., 3].astype(int)
        alpha_b = np.asarray(b)[..., 3].astype(int)
    assert np.abs(alpha_a - alpha_b).max() <= 1  # probabilities agree to 1e-3
    # Level 9 compresses the same pixels harder than the default level 1.
    assert runs["onnxruntime"].stat().st_size < runs["torch"].stat().st_size
    bad = CliRunner().invoke(main, ["remove", str(photo), "-o", str(tmp_path), "--png-level", "10"])
    assert bad.exit_code == 2
