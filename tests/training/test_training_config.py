"""TrainConfig, presets and resolve_config: values, layering, validation, JSON round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from unetbg.training.config import PRESETS, TrainConfig, field_names, resolve_config


@pytest.mark.parametrize(
    ("name", "batch", "lr", "epochs", "size"),
    [
        ("fast", 32, 2e-4, 30, 256),
        ("balanced", 16, 1e-4, 100, 384),
        ("quality", 8, 5e-5, 200, 512),
    ],
)
def test_named_presets_hold_the_documented_values(name, batch, lr, epochs, size):
    cfg = resolve_config(name)
    assert (cfg.preset, cfg.batch_size, cfg.lr, cfg.epochs, cfg.image_size) == (
        name,
        batch,
        lr,
        epochs,
        size,
    )
    assert cfg.optimizer == "adamw" and cfg.scheduler == "cosine"
    assert cfg.weight_decay == 1e-6


def test_balanced_is_the_default_and_smoke_is_tiny_and_capped():
    assert resolve_config() == TrainConfig() == PRESETS["balanced"]
    smoke = resolve_config("smoke")
    assert smoke.image_size <= 128 and smoke.batch_size <= 4 and smoke.epochs <= 2
    assert smoke.max_steps_per_epoch is not None and smoke.val_limit is not None
    assert smoke.encoder_weights is None  # runs offline


def test_overrides_replace_preset_values_and_keep_the_rest():
    cfg = resolve_config("fast", epochs=3, lr=1, patience=None, coco_root="/data/coco")
    assert (cfg.epochs, cfg.lr, cfg.patience, cfg.coco_root) == (3, 1.0, None, "/data/coco")
    assert isinstance(cfg.lr, float)  # an int for a float field is accepted and converted
    assert cfg.batch_size == 32 and cfg.preset == "fast"


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown preset 'huge'.*smoke, fast, balanced, quality"):
        resolve_config("huge")


def test_unknown_field_is_named_with_the_valid_fields():
    with pytest.raises(ValueError, match=r"unknown training config field\(s\): epoch;.*epochs"):
        resolve_config("fast", epoch=3)


def test_every_invalid_value_is_reported_at_once():
    with pytest.raises(ValueError) as info:
        resolve_config("fast", epochs=0, lr=-1.0, image_size=100, crowd="maybe")
    message = str(info.value)
    for part in ("epochs must be >= 1", "lr must be > 0", "multiple of 32", "crowd must be one of"):
        assert part in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("epochs", "3", "epochs must be int"),
        ("amp", 1, "amp must be bool or None"),
        ("batch_size", True, "batch_size must be int"),
        ("lr", "fast", "lr must be float"),
    ],
)
def test_wrong_types_are_refused(field, value, expected):
    with pytest.raises(ValueError, match=expected):
        resolve_config("smoke", **{field: value})


def test_preset_cannot_be_overridden_as_a_field():
    with pytest.raises(ValueError, match="preset"):
        resolve_config("fast", preset="quality")


def test_device_dependent_fields_resolve_per_device_and_explicit_values_win():
    cpu = resolve_config("fast").for_device("cpu", cpu_count=2)
    assert (cpu.num_workers, cpu.pin_memory, cpu.amp, cpu.channels_last) == (0, False, False, False)
    # The cpu preset leaves bfloat16 to the CPU: on where it is native, off where emulated.
    for native in (True, False):
        chosen = resolve_config("cpu").for_device("cpu", cpu_count=2, native_bf16=native)
        assert (chosen.amp, chosen.channels_last) == (native, native)
    forced = resolve_config("cpu", amp=True).for_device("cpu", native_bf16=False)
    assert forced.amp is True and forced.channels_last is False
    cuda = resolve_config("fast").for_device("cuda", cpu_count=16)
    assert (cuda.num_workers, cuda.pin_memory, cuda.amp, cuda.channels_last) == (
        8,
        True,
        True,
        True,
    )
    assert resolve_config("fast").for_device("cuda", cpu_count=4).num_workers == 4
    explicit = resolve_config("fast", num_workers=2, amp=False).for_device("cuda", cpu_count=16)
    assert (explicit.num_workers, explicit.amp) == (2, False)


def test_json_round_trip_gives_the_same_config():
    cfg = resolve_config("quality", coco_root="/c", grad_clip=None).for_device("cpu")
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert list(cfg.to_dict()) == field_names()


def test_from_dict_refuses_unknown_keys():
    with pytest.raises(ValueError, match="unknown training config field"):
        TrainConfig.from_dict({"epochs": 2, "momentum": 0.9})


def test_config_module_imports_no_torch():
    code = "import sys, unetbg.training.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_exports_are_loaded_lazily():
    import unetbg.training as training
    from unetbg.training.evaluation import EvaluationStopped

    assert training.EvaluationStopped is EvaluationStopped
    assert "EvaluationStopped" in training.__all__
    assert all(getattr(training, name) is not None for name in training.__all__)


def test_max_zoom_is_checked_and_defaults_to_the_old_zoom():
    assert resolve_config("cpu").max_zoom == 1.6
    assert resolve_config("cpu", max_zoom=2.5).max_zoom == 2.5
    with pytest.raises(ValueError, match=r"max_zoom must be in \[1, 4\], got 0.9"):
        resolve_config("cpu", max_zoom=0.9)


def test_empty_share_is_a_share_and_needs_mixed_sources():
    with pytest.raises(ValueError, match=r"empty_share must be in \[0, 1\], got 1.5"):
        resolve_config("cpu", empty_share=1.5)
    with pytest.raises(ValueError, match="empty_share needs sources given with data"):
        resolve_config("smoke", coco_root="/data/coco", empty_share=0.2)
    assert resolve_config("cpu", empty_share=0.2).empty_share == 0.2
