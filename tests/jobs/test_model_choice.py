"""Which model runs: ``best`` against the default model's card, registered files that are
gone, ids and paths that are not checkpoints, and forgetting a registered checkpoint.

Real checkpoint files (a small random model; the "default" one carries a card with
figures per validation set, as the shipped file does), the real job database and the
real CLI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from inference_fixtures import write_photo
from service_fixtures import make_carded_checkpoint, make_checkpoint
from unetbg import jobs
from unetbg.cli import main
from unetbg.weights import SHIPPED

#: The figures the test default's card records per validation set.
CARD_SCORES = {"coco-mini": 0.40, "ccp-person": 0.85}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint file, and one whose card has :data:`CARD_SCORES` (written once: each
    test copies them)."""
    folder = tmp_path_factory.mktemp("models")
    carded = make_carded_checkpoint(folder / "carded.pth", CARD_SCORES)
    return make_checkpoint(folder / "model.pth"), carded


@pytest.fixture
def registry(embedded_env, tmp_path, monkeypatch, model_files) -> Path:
    """An empty job database, a default model whose card has :data:`CARD_SCORES` and a
    model file to register (``model.pth``)."""
    shutil.copy(model_files[0], tmp_path / "model.pth")
    default = tmp_path / "default" / "person.pth"
    default.parent.mkdir()
    shutil.copy(model_files[1], default)
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", str(default))
    return tmp_path


def _register(folder: Path, metrics: dict, config: dict | None = None) -> jobs.CheckpointView:
    """A run folder in the registry folder with a best_model.pth (a copy of its
    ``model.pth``) registered with ``metrics`` (its run's ``config.json`` when given),
    as training registers its best checkpoint."""
    folder.mkdir()
    path = Path(shutil.copy(folder.parent / "model.pth", folder / "best_model.pth"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    with jobs.db_session() as session:
        row = jobs.register_checkpoint(session, None, path, 3, metrics, True)
        session.flush()
        row_id = row.id
    (view,) = [c for c in jobs.list_checkpoints() if c.id == row_id]
    return view


def test_best_keeps_the_default_unless_a_checkpoint_beats_it_on_a_shared_set(registry):
    default = str(Path(registry / "default" / "person.pth").resolve())
    choice = jobs.choose_checkpoint("best")
    assert (choice.path, choice.default) == (default, True)
    assert "no trained checkpoint is registered" in choice.reason

    # A smoke run: val IoU 0.000 on coco-mini, where the default's card says 0.40.
    smoke = _register(registry / "smoke", {"iou": 0.0, "coco-mini_iou": 0.0})
    choice = jobs.choose_checkpoint("best")
    assert choice.path == default and choice.default
    assert f"registered checkpoint {smoke.id} scored val IoU 0.000 on coco-mini" in choice.reason
    assert "the default 0.400" in choice.reason and f"--checkpoint {smoke.id}" in choice.reason

    # Scored only on a set the default was not: nothing shows it is better.
    mine = _register(registry / "mine", {"iou": 0.9, "holiday_iou": 0.9})
    choice = jobs.choose_checkpoint("best")
    assert choice.default
    assert f"checkpoint {mine.id} was scored on holiday" in choice.reason
    assert "no common validation set" in choice.reason

    # A COCO-only run records one IoU; its set is its COCO folder's name.
    coco = _register(registry / "coco", {"iou": 0.45}, {"coco_root": "/data/coco-mini", "data": []})
    choice = jobs.choose_checkpoint("best")
    assert (choice.path, choice.checkpoint_id, choice.default) == (coco.path, coco.id, False)
    assert "val IoU 0.450 on coco-mini beats the default model's 0.400" in choice.reason

    # Explicit choices are kept whatever the scores: an id, a path, the default.
    assert jobs.choose_checkpoint(str(smoke.id)).path == smoke.path
    assert jobs.choose_checkpoint(smoke.path).checkpoint_id == smoke.id  # named by its id
    assert jobs.choose_checkpoint("default").path == default


def test_best_compares_the_mean_over_the_shared_sets(registry):
    mixed = _register(
        registry / "mixed", {"iou": 0.7, "coco-mini_iou": 0.38, "ccp-person_iou": 0.9}
    )
    choice = jobs.choose_checkpoint("best")  # mean 0.64 against the default's 0.625
    assert choice.checkpoint_id == mixed.id
    assert "on ccp-person, coco-mini beats the default model's 0.625" in choice.reason


def test_a_registered_file_that_is_gone_is_skipped_with_a_warning(registry):
    better = _register(registry / "better", {"iou": 0.5, "coco-mini_iou": 0.5})
    gone = _register(registry / "gone", {"iou": 0.9, "coco-mini_iou": 0.9})
    Path(gone.path).unlink()
    choice = jobs.choose_checkpoint("best")
    assert choice.checkpoint_id == better.id
    (warning,) = choice.warnings
    assert f"registered checkpoint {gone.id}'s file is gone, skipped: {gone.path}" in warning
    assert jobs.best_checkpoint().id == better.id
    with pytest.raises(jobs.NoCheckpointError, match=f"checkpoint {gone.id}'s file is gone"):
        jobs.choose_checkpoint(str(gone.id))

    Path(better.path).unlink()  # none left: the default, with two warnings
    choice = jobs.choose_checkpoint("best")
    assert choice.default and len(choice.warnings) == 2


def test_without_a_default_best_is_the_highest_registered(registry, monkeypatch):
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", "none")
    low = _register(registry / "low", {"iou": 0.1})
    assert jobs.choose_checkpoint("best").checkpoint_id == low.id
    Path(low.path).unlink()
    with pytest.raises(jobs.NoCheckpointError, match="default model is turned off"):
        jobs.choose_checkpoint("best")


def test_the_shipped_card_has_figures_per_validation_set():
    scores = jobs.checkpoints.default_scores(SHIPPED)
    assert scores and all(0 < v < 1 for v in scores.values())


def test_remove_uses_the_default_over_a_worse_checkpoint_and_says_why(registry):
    _register(registry / "smoke", {"iou": 0.0, "coco-mini_iou": 0.0})
    better = _register(registry / "gone", {"iou": 0.9, "coco-mini_iou": 0.9})
    Path(better.path).unlink()
    photo = write_photo(registry / "in" / "p.jpg", 48, 32)
    result = CliRunner().invoke(main, ["remove", str(photo), "-o", str(registry / "out")])
    assert result.exit_code == 0, result.output
    default = Path(registry / "default" / "person.pth").resolve()
    assert f"using the default model {default}" in result.stderr
    assert "scored val IoU 0.000 on coco-mini, the default 0.400" in result.stderr
    assert f"checkpoint {better.id}'s file is gone, skipped" in result.stderr
    assert f"(checkpoint {default}" in result.stderr
    assert Image.open(registry / "out" / "p.png").size == (48, 32)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "/etc/passwd",
            "refusing checkpoint /etc/passwd: not a checkpoint file (unetbg checkpoints",
        ),
        ("nope", "no checkpoint 'nope': --checkpoint takes best, default, a registered"),
        ("nope.pth", "checkpoint file not found: "),
        ("77", "no registered checkpoint with id 77"),
        ("/tmp", "checkpoint /tmp is a folder, not a checkpoint file"),
    ],
)
def test_a_checkpoint_that_is_not_one_is_one_clear_line(registry, spec, message):
    photo = write_photo(registry / "in" / "p.jpg", 48, 32)
    for command in (
        ["remove", str(photo), "-o", str(registry / "out")],
        ["remove-dir", str(photo.parent), str(registry / "out")],
    ):
        result = CliRunner().invoke(main, [*command, "--checkpoint", spec])
        assert result.exit_code == 2, result.output
        assert message in result.stderr and "Traceback" not in result.output
        assert "IndexError" not in result.stderr
    assert jobs.list_jobs() == [] and not (registry / "out").exists()


def test_checkpoints_remove_forgets_and_deletes_only_when_asked(registry):
    kept = _register(registry / "kept", {"iou": 0.2})
    deleted = _register(registry / "deleted", {"iou": 0.3})
    runner = CliRunner()
    result = runner.invoke(main, ["checkpoints", "remove", str(kept.id)])
    assert result.exit_code == 0, result.output
    assert f"forgot checkpoint {kept.id}" in result.output and "file kept" in result.output
    assert Path(kept.path).is_file()
    result = runner.invoke(main, ["checkpoints", "remove", str(deleted.id), "--delete-file"])
    assert result.exit_code == 0, result.output
    assert not Path(deleted.path).exists() and "deleted" in result.output
    assert jobs.list_checkpoints() == []
    result = runner.invoke(main, ["checkpoints", "remove", str(kept.id)])
    assert result.exit_code == 2 and f"no registered checkpoint with id {kept.id}" in result.stderr


@pytest.mark.parametrize(
    "command", ["remove", "remove-dir", "evaluate", "submit-evaluate", "serve", "web"]
)
def test_unetbg_checkpoint_is_read_by_every_command_that_takes_one(registry, monkeypatch, command):
    photo = write_photo(registry / "in" / "p.jpg", 48, 32)
    arguments = {
        "remove": [str(photo), "-o", str(registry / "out")],
        "remove-dir": [str(photo.parent), str(registry / "out")],
        "evaluate": ["--coco-root", str(registry)],
        "submit-evaluate": ["--coco-root", str(registry)],
        "serve": [],
        "web": [],
    }
    monkeypatch.setenv("UNETBG_CHECKPOINT", "nope")
    result = CliRunner().invoke(main, [command, *arguments[command]])
    assert result.exit_code == 2, result.output
    assert "no checkpoint 'nope': --checkpoint takes best, default" in result.stderr
    assert jobs.list_jobs() == []


def test_a_job_records_the_model_it_runs_and_status_shows_it(registry):
    smoke = _register(registry / "smoke", {"iou": 0.0, "coco-mini_iou": 0.0})
    photo = write_photo(registry / "in" / "p.jpg", 48, 32)
    runner = CliRunner()
    job = runner.invoke(main, ["remove-dir", str(photo.parent), str(registry / "o"), "--json"])
    assert job.exit_code == 0, job.output
    assert "using the default model" in job.stderr
    record = json.loads(job.stdout)
    model = record["params"]["model"]
    default = Path(registry / "default" / "person.pth").resolve()
    assert model == {
        "path": str(default),
        "id": None,
        "default": True,
        "sha256": jobs.checkpoints.file_digest(default),
        "reason": None,
    }
    shown = runner.invoke(main, ["status", record["id"]]).stdout
    assert f"the default model (sha256 {model['sha256'][:12]}, {default})" in shown

    named = runner.invoke(
        main,
        ["remove-dir", str(photo.parent), str(registry / "o2"), "--checkpoint", str(smoke.id)],
    )
    assert named.exit_code == 0, named.output
    shown = runner.invoke(main, ["status", named.stdout.split()[0]]).stdout
    assert f"checkpoint {smoke.id} ({smoke.path})" in shown
