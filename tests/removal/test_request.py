"""unetbg.removal.request: one removal request whichever front door it came through, and
unetbg.inference.ModelCache, the one cache of loaded models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference_fixtures import person_photo, rewrite_as_constant, tiny_checkpoint
from unetbg.backends import default_batch_size
from unetbg.inference import ModelCache
from unetbg.removal import (
    KindConflict,
    OutputOptions,
    RemovalRequest,
    RunOptions,
    describe_run,
    output_kind,
    output_options,
)


def test_run_options_round_trip_through_json():
    run = RunOptions(device="cpu", backend="onnxruntime", batch_size=2, flip_average=True)
    assert RunOptions.from_params(json.loads(json.dumps(run.to_params()))) == run


def test_job_params_recorded_before_the_request_object_still_load(tmp_path):
    # A remove-dir job's params as recorded before backends and the checkpoint switches.
    old = {
        "input_dir": str(tmp_path / "in"),
        "output_dir": str(tmp_path / "out"),
        "checkpoint": str(tmp_path / "model.pth"),
        "options": {"kind": "mask", "threshold": None, "color": [255, 255, 255],
                    "background": None, "format": "png"},
        "chunk_size": 16, "batch_size": 2, "overwrite": False, "follow_symlinks": False,
        "device": "cpu",
    }  # fmt: skip
    request = RemovalRequest.from_params(old)
    assert request.checkpoint == old["checkpoint"]
    assert request.output == OutputOptions(kind="mask")
    assert request.run == RunOptions(device="cpu", backend="torch", batch_size=2)
    assert request.run.backend == "torch" and request.run.checkpoint_overrides() == {
        "flip_average": None,
        "refine_edges": None,
        "alpha_curve": None,
    }
    again = RemovalRequest.from_params(json.loads(json.dumps(request.to_params())))
    assert again == request


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"backend": "tpu"}, "unknown backend 'tpu'"),
        ({"flip_average": "yes"}, "flip_average must be true, false or null"),
        ({"device": ""}, "device must be a name"),
    ],
)
def test_run_options_are_checked_once(fields, message):
    with pytest.raises(ValueError, match=message):
        RunOptions(**fields)


def test_take_pops_the_run_options_out_of_a_commands_keywords():
    given = {"device": "cpu", "refine_edges": False, "kind": "mask"}
    assert RunOptions.take(given, batch_size=8) == RunOptions(
        device="cpu", batch_size=8, refine_edges=False
    )
    assert given == {"kind": "mask"}


def test_the_default_output_kind_rule():
    assert output_kind(None) == "cutout"
    assert output_kind(None, color="red") == "color"
    assert output_kind(None, background=np.zeros((2, 2, 3), np.uint8)) == "background"
    assert output_kind("mask") == "mask"
    with pytest.raises(KindConflict) as refused:
        output_kind("mask", color="red")
    assert refused.value.kind == "mask"
    options = output_options(None, "#00ff00", None, format="jpeg", threshold=None)
    assert (options.kind, options.color, options.format) == ("color", (0, 255, 0), "jpeg")


def test_describe_run_reads_objects_and_mappings():
    assert describe_run({"flip_average": True, "refine_edges": True}) == (
        ", flip-averaged, edges refined"
    )
    assert describe_run(RunOptions(refine_edges=True)) == ", edges refined"
    assert describe_run(RunOptions()) == ""


def _mask(model, photo) -> float:
    return float(model.predict_arrays([photo])[0].mean())


def test_model_cache_loads_a_checkpoint_rewritten_in_place_again(tmp_path_factory, tmp_path):
    source = tiny_checkpoint(tmp_path_factory)
    path = rewrite_as_constant(source, tmp_path / "best_model.pth", person=True)
    loads: list[str] = []
    cache = ModelCache(2, on_load=lambda p, _: loads.append(p))
    run = RunOptions(device="cpu", backend="torch")  # the cache, not a backend, on test
    photo = person_photo(48, 40)
    first = cache.get(path, run)
    assert _mask(first, photo) > 0.99
    assert cache.get(path, run) is first and len(loads) == 1  # reused
    assert cache.get(path, RunOptions(device="cpu", backend="torch", batch_size=7)) is first
    assert first.batch_size == 7

    rewrite_as_constant(source, path, person=False)
    second = cache.get(path, run)
    assert second is not first and _mask(second, photo) < 0.01
    assert loads == [str(path), str(path)]
    # Other run options are another model; the file's old version is gone.
    flipped = cache.get(path, RunOptions(device="cpu", backend="torch", flip_average=True))
    assert flipped is not second and flipped.preprocessing.flip_average
    assert cache.get(path, run) is second and len(loads) == 3


def test_no_batch_size_runs_the_backends_own(tmp_path_factory, tmp_path):
    # A request that names no batch size gets the batch size of the backend that
    # runs; a job recorded before that existed (no key) keeps the 4 it ran with.
    path = tiny_checkpoint(tmp_path_factory)
    cache = ModelCache(1)
    model = cache.get(path, RunOptions(device="cpu", backend="torch"))
    assert model.batch_size == model.default_batch_size == default_batch_size("cpu", "torch")
    assert cache.get(path, RunOptions(device="cpu", backend="torch", batch_size=3)).batch_size == 3
    assert cache.get(path, RunOptions(device="cpu", backend="torch")).batch_size == (
        default_batch_size("cpu", "torch")
    )
    assert RunOptions.from_params({"device": "cpu"}).batch_size == 4
    assert RunOptions.from_params(RunOptions().to_params()).batch_size is None


def test_model_cache_keeps_at_most_size_models(tmp_path_factory, tmp_path):
    source = tiny_checkpoint(tmp_path_factory)
    a = rewrite_as_constant(source, tmp_path / "a.pth", person=True)
    b = rewrite_as_constant(source, tmp_path / "b.pth", person=False)
    loads: list[str] = []
    cache = ModelCache(1, on_load=lambda p, _: loads.append(Path(p).name))
    run = RunOptions(device="cpu", backend="torch")  # the cache, not a backend, on test
    cache.get(a, run), cache.get(b, run), cache.get(a, run)
    assert loads == ["a.pth", "b.pth", "a.pth"]
