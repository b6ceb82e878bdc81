"""The checkpoint header check that needs no torch (``unetbg.removal.header``): it agrees
with the loader on real files, and refuses what a ``weights_only`` load refuses."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest

from service_fixtures import make_checkpoint
from unetbg.removal.checks import Refused
from unetbg.removal.header import (
    FORMAT_VERSION,
    REQUIRED_KEYS,
    check_checkpoint_header,
    check_device_name,
)


def test_its_constants_are_the_loaders():
    from unetbg.model import checkpoint

    assert FORMAT_VERSION == checkpoint.FORMAT_VERSION
    assert REQUIRED_KEYS == checkpoint._REQUIRED_KEYS


def test_a_real_checkpoint_passes_and_a_pickle_of_other_objects_is_refused(tmp_path: Path):
    real = make_checkpoint(tmp_path / "model.pth", image_size=64)
    assert check_checkpoint_header(str(real)) == str(real)

    class Payload:  # what an unsafe file smuggles in: a call on load
        def __reduce__(self):
            return (print, ("ran",))

    unsafe = tmp_path / "unsafe.pth"
    with zipfile.ZipFile(unsafe, "w") as archive:
        data = {key: 1 for key in REQUIRED_KEYS} | {"x": Payload()}
        archive.writestr("unsafe/data.pkl", pickle.dumps(data, protocol=2))
    with pytest.raises(
        Refused, match=r"names (__builtin__|builtins)\.print, which a weights_only load refuses"
    ):
        check_checkpoint_header(str(unsafe))


def test_device_names_are_checked_by_form():
    for name in ("auto", "cpu", "cuda", "cuda:1", "CUDA:0"):
        assert check_device_name(name) == name
    for name in ("gpu", "cuda:x", ""):
        with pytest.raises(Refused, match="invalid device"):
            check_device_name(name)
