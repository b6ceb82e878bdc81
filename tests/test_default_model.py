"""The model that ships in the package: its file, its card, and when it is used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from inference_fixtures import person_photo, tiny_checkpoint, write_photo
from maskgen import make_mask_folder
from unetbg import jobs
from unetbg.cli import main
from unetbg.inference import ModelInference
from unetbg.model import load_checkpoint, save_checkpoint
from unetbg.weights import SHIPPED

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture
def empty_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("UNETBG_DATA_DIR", str(tmp_path / "data"))
    for name in ("UNETBG_DATABASE_URL", "UNETBG_BROKER_URL", "UNETBG_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_shipped_file_is_small_safe_half_precision_and_carries_its_card():
    assert SHIPPED.is_file(), "src/unetbg/weights/person.pth must ship with the package"
    assert SHIPPED.stat().st_size <= 50 * 2**20
    checkpoint = torch.load(SHIPPED, weights_only=True)
    weights = checkpoint["state_dict"]
    convs = [v for k, v in weights.items() if k.endswith("weight") and v.ndim == 4]
    assert convs and all(v.dtype == torch.float16 for v in convs)
    assert all(v.dtype == torch.float32 for k, v in weights.items() if "running_" in k)
    card = checkpoint["card"]
    assert card["fp16_mask_agreement_iou"] >= 0.995 and card["agreement_images"] > 0
    assert "unetbg train" in card["command"] and card["config"]["preset"] == "cpu"
    for source in card["data"]:
        assert len(source["train_manifest_sha256"]) == 64 and source["train_images"] > 0
    assert checkpoint["model_config"]["encoder"] == "resnet34"
    assert checkpoint["model_config"]["attention"] == "gate"


def test_model_inference_without_a_checkpoint_uses_the_shipped_model(monkeypatch):
    monkeypatch.delenv("UNETBG_DEFAULT_MODEL", raising=False)
    model = ModelInference(device="cpu")
    assert model.checkpoint_path == SHIPPED
    cutout = model.remove_background(Image.fromarray(person_photo(96, 64)))
    assert cutout.size == (96, 64) and cutout.mode == "RGBA"
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", "none")
    with pytest.raises(ValueError, match="no checkpoint given and no default model"):
        ModelInference(device="cpu")


def test_best_is_the_default_unless_shown_better_and_a_registered_one_without_it(
    empty_registry, tiny, monkeypatch
):
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", str(tiny))
    assert jobs.resolve_checkpoint("best") == str(tiny.resolve())
    assert jobs.resolve_checkpoint("default") == str(tiny.resolve())
    assert "using the default model" in jobs.describe_checkpoint(tiny)

    trained = empty_registry / "run" / "best_model.pth"
    trained.parent.mkdir()
    trained.write_bytes(tiny.read_bytes())
    with jobs.db_session() as session:
        jobs.register_checkpoint(session, None, trained, 3, {"iou": 0.5}, True)
    # This default's card records no figures: nothing shows the trained one is better.
    choice = jobs.choose_checkpoint("best")
    assert choice.path == str(tiny.resolve()) and "records no validation figures" in choice.reason
    assert jobs.resolve_checkpoint("default") == str(tiny.resolve())
    assert jobs.describe_checkpoint(trained) is None
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", "none")  # no default: the best registered
    assert jobs.resolve_checkpoint("best") == str(trained.resolve())

    monkeypatch.delenv("UNETBG_DEFAULT_MODEL")
    assert jobs.resolve_checkpoint("default") == str(SHIPPED.resolve())
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", "none")
    with pytest.raises(jobs.NoCheckpointError, match="default model is turned off"):
        jobs.resolve_checkpoint("default")


def test_remove_and_remove_dir_say_when_they_use_the_default(empty_registry, tiny, monkeypatch):
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", str(tiny))
    photo = write_photo(empty_registry / "in" / "p.jpg", 48, 32)
    runner = CliRunner()
    one = runner.invoke(main, ["remove", str(photo), "-o", str(empty_registry / "o")])
    assert one.exit_code == 0, one.output
    assert "using the default model" in one.stderr
    assert Image.open(empty_registry / "o" / "p.png").size == (48, 32)
    folder = runner.invoke(
        main, ["remove-dir", str(photo.parent), str(empty_registry / "d"), "--wait", "--json"]
    )
    assert folder.exit_code == 0, folder.output
    assert "using the default model" in folder.stderr
    assert (empty_registry / "d" / "p.png").is_file()
    listed = runner.invoke(main, ["checkpoints", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["path"] for r in rows if r.get("default")] == [str(tiny.resolve())]


def test_ship_writes_half_precision_with_its_card_and_refuses_disagreement(tmp_path):
    from unetbg.training.config import resolve_config
    from unetbg.training.fit import fit
    from unetbg.training.shipping import ship

    folder = make_mask_folder(tmp_path / "people", count=12)
    cfg = resolve_config(
        "smoke",
        data=(f"masks:{folder}",),
        samples_per_epoch=4,
        epochs=2,
        image_size=64,
        val_limit=None,
        final_evaluation=False,
        device="cpu",
    )
    fit(cfg, tmp_path / "run")
    photos = [person_photo(64, 48), person_photo(40, 60)]
    card = ship(tmp_path / "run", tmp_path / "shipped.pth", photos, "unetbg train ...", 0.0)
    shipped = torch.load(tmp_path / "shipped.pth", weights_only=True)
    assert shipped["card"] == card and "train_state" not in shipped
    assert card["data"][0]["train_images"] + card["data"][0]["val_images"] == 12
    assert 0 <= card["fp16_mask_agreement_iou"] <= 1
    assert shipped["preprocessing"]["flip_average"] is shipped["preprocessing"]["refine_edges"]
    assert shipped["preprocessing"]["refine_edges"] is False
    assert card["source_checkpoint"] == str(tmp_path / "run" / "best_model.pth")
    with pytest.raises(ValueError, match="not shipped"):
        ship(tmp_path / "run", tmp_path / "refused.pth", photos, "x", min_agreement=1.01)
    assert not (tmp_path / "refused.pth").exists()

    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert card["epochs_trained"] == card["best_epoch"] in (1, 2)  # up to the best one

    # Another checkpoint of the run (one epoch's, as a run's snapshots are),
    # flip-averaged and edge-refined by default, with its own evaluation: its card
    # counts the epochs that made it, not those the run went on with.
    state = load_checkpoint(tmp_path / "run" / "last_model.pth", map_location="cpu")
    other = tmp_path / "ema-1.pth"
    save_checkpoint(other, {k: v for k, v in state.items() if k != "train_state"} | {"epoch": 1})
    card = ship(
        tmp_path / "run",
        tmp_path / "flip.pth",
        photos,
        "x",
        0.0,
        checkpoint=other,
        flip_average=True,
        refine_edges=True,
        evaluation={"iou": 0.5},
    )
    assert card["source_checkpoint"] == str(other) and card["evaluation"] == {"iou": 0.5}
    assert card["epochs_trained"] == card["best_epoch"] == 1
    assert card["training_seconds"] == round(history[0]["seconds"], 1)
    preprocessing = ModelInference(tmp_path / "flip.pth", device="cpu").preprocessing
    assert preprocessing.flip_average and preprocessing.refine_edges
    stored = torch.load(tmp_path / "flip.pth", weights_only=True)["preprocessing"]
    assert (stored["edge_radius"], stored["edge_eps"]) == (2.0, 1e-3)  # all written out


def test_a_fine_tuned_model_ships_with_its_alpha_curve_and_lineage(tmp_path):
    from unetbg.training.config import resolve_config
    from unetbg.training.fit import fit
    from unetbg.training.shipping import ship

    folder = make_mask_folder(tmp_path / "people", count=12)
    common = dict(
        data=(f"masks:{folder}",),
        samples_per_epoch=4,
        epochs=1,
        image_size=64,
        val_limit=None,
        final_evaluation=False,
        device="cpu",
    )
    fit(resolve_config("smoke", **common), tmp_path / "first")
    photos = [person_photo(64, 48)]
    ship(tmp_path / "first", tmp_path / "first.pth", photos, "train first", 0.0)
    cfg = resolve_config("smoke", **common, init_weights=str(tmp_path / "first.pth"))
    fit(cfg, tmp_path / "tuned")
    card = ship(
        tmp_path / "tuned", tmp_path / "tuned.pth", photos, "tune", 0.0, alpha_curve=(0.1, 0.9)
    )
    assert card["started_from"]["path"] == str(tmp_path / "first.pth")
    assert card["started_from"]["card"]["command"] == "train first"
    stored = torch.load(tmp_path / "tuned.pth", weights_only=True)["preprocessing"]
    assert (stored["alpha_low"], stored["alpha_high"]) == (0.1, 0.9)
    assert ModelInference(tmp_path / "tuned.pth", device="cpu").preprocessing.alpha_low == 0.1
    plain = ship(tmp_path / "first", tmp_path / "plain.pth", photos, "x", 0.0)
    assert plain["started_from"] is None
