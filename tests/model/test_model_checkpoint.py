"""Checkpoints: exact round trip, weights_only safety, format checks, atomic writes."""

from __future__ import annotations

import os
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from unetbg.model import (
    FORMAT_VERSION,
    CheckpointError,
    Preprocessing,
    build_checkpoint,
    load_checkpoint,
    load_model,
    save_checkpoint,
)


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: the side effect an unsafe loader would allow."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def saved(small_model, small_config, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    # A path that does not exist where the checkpoint is loaded: it must be ignored then.
    config = replace(small_config, encoder_weights="/nonexistent/resnet34.pth")
    optimizer = torch.optim.AdamW(small_model.parameters(), lr=1e-3)
    state = build_checkpoint(
        small_model,
        config,
        Preprocessing(image_size=64),
        epoch=3,
        metrics={"iou": np.float32(0.5), "loss": 0.25},
        train_state={"optimizer": optimizer.state_dict(), "step": 7},
    )
    save_checkpoint(path, state)
    return path, config


def test_round_trip_gives_identical_outputs(saved, small_model):
    path, config = saved
    model, checkpoint = load_model(path)
    assert not model.training
    assert checkpoint["format_version"] == FORMAT_VERSION
    assert checkpoint["model_config"] == config.to_dict()
    assert Preprocessing.from_dict(checkpoint["preprocessing"]).image_size == 64
    assert checkpoint["epoch"] == 3 and checkpoint["metrics"] == {"iou": 0.5, "loss": 0.25}
    assert checkpoint["train_state"]["step"] == 7
    x = torch.randn(1, 3, 45, 70)
    with torch.no_grad():
        a, b = small_model(x), model(x)
    for key in ("mask", "reconstruction"):
        assert torch.equal(a[key], b[key])


def test_save_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "sub" / "last.pth"
    state = {"format_version": 1, "model_config": {}, "preprocessing": {}, "state_dict": {}}
    save_checkpoint(path, {**state, "epoch": 1})
    save_checkpoint(path, {**state, "epoch": 2})
    assert load_checkpoint(path)["epoch"] == 2
    assert os.listdir(path.parent) == ["last.pth"]  # no temporary files left behind
    with pytest.raises(CheckpointError, match="object cannot be stored"):
        save_checkpoint(path, {**state, "epoch": object()})
    assert load_checkpoint(path)["epoch"] == 2  # a failed save leaves the old file intact
    assert os.listdir(path.parent) == ["last.pth"]


def test_unsafe_values_are_refused_when_building(small_model, small_config):
    with pytest.raises(CheckpointError, match=r"metrics\['when'\]: set cannot be stored"):
        build_checkpoint(small_model, small_config, Preprocessing(), 1, {"when": {1}})


def test_malicious_pickle_is_refused_without_side_effect(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"format_version": 1, "payload": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="contains unsafe pickled objects; only weights_only"):
        load_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="posix.mkdir"):
        load_model(path)
    assert not marker.exists()
    # Control: an unsafe load of the same file really would have run the payload.
    torch.load(path, weights_only=False)
    assert marker.is_dir()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_plain_pickle_and_corrupt_files_are_refused(saved, tmp_path):
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"format_version": 1}))
    with pytest.raises(CheckpointError, match="not a unetbg checkpoint or contains unsafe"):
        load_checkpoint(plain)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(saved[0].read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "absent.pth")


def test_unknown_format_version_and_bad_content(saved, tmp_path, small_model):
    state = load_checkpoint(saved[0])
    future = tmp_path / "future.pth"
    save_checkpoint(future, {**state, "format_version": 2, "state_dict": {}})
    with pytest.raises(CheckpointError, match="unsupported checkpoint format_version 2"):
        load_checkpoint(future)
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="no format_version"):
        load_checkpoint(foreign)
    mismatched = tmp_path / "mismatched.pth"
    config = {**state["model_config"], "attention": None}  # the weights include gates
    save_checkpoint(mismatched, {**state, "model_config": config})
    with pytest.raises(CheckpointError, match="weights do not match the stored model_config"):
        load_model(mismatched)


@pytest.mark.parametrize("junk", [b"\x00\x01\x02\x03", b"this is not a checkpoint", b""])
def test_junk_bytes_raise_checkpoint_error(tmp_path, junk):
    path = tmp_path / "junk.pth"
    path.write_bytes(junk)
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_checkpoint(path)


def test_saved_checkpoint_permissions_follow_the_umask(tmp_path, saved):
    path = tmp_path / "shared.pth"
    old = os.umask(0o022)
    try:
        save_checkpoint(path, load_checkpoint(saved[0]))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".*.tmp"))
