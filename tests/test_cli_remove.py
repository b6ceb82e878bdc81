"""``unetbg remove`` end to end: real checkpoint, real files, the real click group."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from PIL import Image

from inference_fixtures import tiny_checkpoint, write_photo
from unetbg.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory)


def _run(*args: object, env: dict[str, str] | None = None, input: bytes | None = None):
    return CliRunner().invoke(main, ["remove", *map(str, args)], env=env, input=input)


def _digest(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_remove_writes_and_prints_each_output(tmp_path: Path, checkpoint: Path) -> None:
    inputs = [
        write_photo(tmp_path / "in" / "one photo.jpg", 48, 32),
        write_photo(tmp_path / "in" / "-dash.png", 20, 30),
        write_photo(tmp_path / "other" / "one photo.jpg", 10, 10),
    ]
    before = _digest(inputs)
    out = tmp_path / "out"
    result = _run("--checkpoint", checkpoint, "-o", out, "--device", "cpu", "--", *inputs)
    assert result.exit_code == 0, result.output
    printed = result.stdout.splitlines()
    assert printed == [
        str(out.resolve() / "one photo.jpg.png"),
        str(out.resolve() / "-dash.png"),
        str(out.resolve() / "one photo.jpg~1.png"),
    ]
    with Image.open(printed[0]) as im:
        assert im.mode == "RGBA" and im.size == (48, 32)
    assert _digest(inputs) == before

    # Rerun without --overwrite: nothing rewritten, each skip named, exit 0 (like
    # remove-dir: the same command again does only what is missing).
    written = _digest([Path(p) for p in printed])
    again = _run("--checkpoint", checkpoint, "-o", out, "--device", "cpu", "--", *inputs)
    assert again.exit_code == 0, again.output
    assert again.stderr.count("exists; use --overwrite") == 3 and again.stdout == ""
    assert "0 written, 3 skipped (output exists)" in again.stderr
    assert _digest([Path(p) for p in printed]) == written
    forced = _run(
        "--checkpoint", checkpoint, "-o", out, "--device", "cpu", "--overwrite", "--", *inputs
    )
    assert forced.exit_code == 0, forced.output


def test_kinds_formats_and_env_checkpoint(tmp_path: Path, checkpoint: Path) -> None:
    src = write_photo(tmp_path / "p.png", 40, 30)
    bg = write_photo(tmp_path / "bg.jpg", 64, 64)
    env = {"UNETBG_CHECKPOINT": str(checkpoint)}
    cases = [
        (["--color", "#00ff00", "--format", "jpeg"], "JPEG", "RGB"),
        (["--background", bg, "--format", "webp", "--threshold", "0.5"], "WEBP", "RGB"),
        (["--kind", "mask", "--batch-size", "1"], "PNG", "L"),
    ]
    for i, (extra, fmt, mode) in enumerate(cases):
        result = _run(src, "-o", tmp_path / f"out{i}", "--device", "cpu", *extra, env=env)
        assert result.exit_code == 0, result.output
        with Image.open(result.stdout.strip()) as im:
            assert (im.format, im.mode, im.size) == (fmt, mode, (40, 30))


def test_failures_and_refusals(tmp_path: Path, checkpoint: Path) -> None:
    good = write_photo(tmp_path / "good.png", 30, 20)
    (tmp_path / "bad.jpg").write_text("not an image")
    common = ["--checkpoint", checkpoint, "--device", "cpu"]

    result = _run(good, tmp_path / "bad.jpg", "-o", tmp_path / "o", *common)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [str((tmp_path / "o" / "good.png").resolve())]
    assert "bad.jpg: not a recognised image format" in result.stderr
    assert "1 written, 1 not written" in result.stderr

    # A missing input is a usage error: refused before the model loads, nothing written.
    missing = _run(good, tmp_path / "missing.png", "-o", tmp_path / "m", *common)
    assert missing.exit_code == 2, missing.output
    assert f"no such file: {tmp_path / 'missing.png'}" in missing.stderr
    assert "model on" not in missing.stderr and not (tmp_path / "m").exists()

    # Writing onto an input is refused before anything runs.
    before = good.read_bytes()
    onto = _run(good, "-o", tmp_path, *common)
    assert onto.exit_code == 2 and "over its input" in onto.stderr
    assert good.read_bytes() == before

    usage = [
        (["--format", "jpeg"], "JPEG has no alpha"),
        (["--kind", "mask", "--color", "red"], "--color needs --kind color"),
        (["--color", "nope"], "cannot parse colour"),
        (["--kind", "background"], "needs a background"),
        (["--threshold", "2"], "2.0 is not in the range"),
    ]
    for extra, message in usage:
        bad = _run(good, "-o", tmp_path / "u", *common, *extra)
        assert bad.exit_code == 2 and message in bad.stderr, (extra, bad.stderr)
    assert not (tmp_path / "u").exists()

    missing_ckpt = _run(
        good, "-o", tmp_path / "u", "--checkpoint", tmp_path / "nope.pth", "--device", "cpu"
    )
    assert missing_ckpt.exit_code == 2, missing_ckpt.output
    assert f"checkpoint file not found: {tmp_path / 'nope.pth'}" in missing_ckpt.stderr
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint")
    junk = _run(good, "-o", tmp_path / "u", "--checkpoint", tmp_path / "junk.pth")
    assert junk.exit_code == 2 and "junk.pth" in junk.stderr  # as remove-dir refuses it


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu(tmp_path: Path, checkpoint: Path) -> None:
    good = write_photo(tmp_path / "good.png", 30, 20)
    result = _run(good, "-o", tmp_path / "o", "--checkpoint", checkpoint, "--device", "cuda")
    assert result.exit_code == 2 and "no CUDA GPU" in result.stderr  # as remove-dir
    assert "model on" not in result.stderr and not (tmp_path / "o").exists()


def test_installed_entry_point(tmp_path: Path, checkpoint: Path) -> None:
    src = write_photo(tmp_path / "p.jpg", 24, 24)
    exe = Path(sys.executable).with_name("unetbg")
    env = {**os.environ, "UNETBG_CHECKPOINT": str(checkpoint)}
    proc = subprocess.run(
        [str(exe), "remove", str(src), "-o", str(tmp_path / "o"), "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == (tmp_path / "o" / "p.png").resolve()


def test_help_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from unetbg.cli import main\n"
        "r = CliRunner().invoke(main, ['remove', '--help'])\n"
        "assert r.exit_code == 0 and '--checkpoint' in r.output, r.output\n"
        "assert 'UNETBG_CHECKPOINT' in r.output and \"'best'\" in r.output\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_output_folder_holding_an_input_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    # in2/a.png is the user's photo, not named: writing a.jpg's output into in2 would
    # replace it (with --overwrite) or be skipped; either way in2 is the wrong folder.
    named = write_photo(tmp_path / "in2" / "a.jpg", 24, 24)
    original = write_photo(tmp_path / "in2" / "a.png", 30, 20)
    before = original.read_bytes()
    common = ["--checkpoint", checkpoint, "--device", "cpu", "--overwrite"]
    same = _run(named, "-o", tmp_path / "in2", *common)
    assert same.exit_code == 2, same.output
    assert f"output folder {(tmp_path / 'in2').resolve()} holds the input {named}" in same.stderr
    assert original.read_bytes() == before

    # An output folder above an input's folder is refused too (in2/a.png would be
    # written over from in2/sub/a.jpg); one below it is fine (outputs in a sub-folder).
    deeper = write_photo(tmp_path / "in2" / "sub" / "a.jpg", 24, 24)
    above = _run(deeper, "-o", tmp_path / "in2", *common)
    assert above.exit_code == 2 and "holds the input" in above.stderr
    assert original.read_bytes() == before
    below = _run(named, "-o", tmp_path / "in2" / "cut", *common)
    assert below.exit_code == 0, below.output
    assert below.stdout.strip() == str((tmp_path / "in2" / "cut" / "a.png").resolve())
    assert original.read_bytes() == before


def test_reports_the_device_and_model_used(tmp_path: Path, checkpoint: Path) -> None:
    src = write_photo(tmp_path / "p.jpg", 24, 24)
    result = _run(src, "-o", tmp_path / "o", "--checkpoint", checkpoint, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"model on cpu (checkpoint {checkpoint}, image size 64)" in result.stderr
    assert result.stdout.strip() == str((tmp_path / "o" / "p.png").resolve())


def test_skip_names_the_existing_output(tmp_path: Path, checkpoint: Path) -> None:
    src = write_photo(tmp_path / "in" / "p.jpg", 24, 24)
    existing = tmp_path / "o" / "p.png"
    existing.parent.mkdir()
    existing.write_bytes(b"mine")
    result = _run(src, "-o", tmp_path / "o", "--checkpoint", checkpoint, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"skipped: {src}: {existing.resolve()} exists; use --overwrite" in result.stderr
    assert existing.read_bytes() == b"mine"

    # A skip does not hide a failure beside it.
    (tmp_path / "in" / "bad.png").write_text("not an image")
    mixed = _run(src, tmp_path / "in" / "bad.png", "-o", tmp_path / "o", "--checkpoint", checkpoint)
    assert mixed.exit_code == 1, mixed.output
    assert "0 written, 1 skipped (output exists), 1 not written" in mixed.stderr
    assert existing.read_bytes() == b"mine"


def test_checkpoint_best_registered_id_or_env(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unetbg.jobs import db_session, list_checkpoints, register_checkpoint

    monkeypatch.setenv("UNETBG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("UNETBG_DATABASE_URL", raising=False)
    monkeypatch.delenv("UNETBG_CHECKPOINT", raising=False)
    monkeypatch.setenv("UNETBG_DEFAULT_MODEL", "none")  # no shipped model to fall back on
    src = write_photo(tmp_path / "p.jpg", 24, 24)

    # Nothing registered: `best` (the default) is a usage error saying what to do.
    none = _run(src, "-o", tmp_path / "o", "--device", "cpu")
    assert none.exit_code == 2, none.output
    assert "no trained checkpoint is registered" in none.stderr
    assert "--checkpoint PATH" in none.stderr and "Traceback" not in none.output
    assert not (tmp_path / "o").exists()
    unknown = _run(src, "-o", tmp_path / "o", "--checkpoint", "999", "--device", "cpu")
    assert unknown.exit_code == 2 and "no registered checkpoint with id 999" in unknown.stderr

    with db_session() as session:
        register_checkpoint(session, None, checkpoint, 1, {"iou": 0.5}, is_best=True)
    (row,) = list_checkpoints()
    for i, extra in enumerate([[], ["--checkpoint", "best"], ["--checkpoint", str(row.id)]]):
        result = _run(src, "-o", tmp_path / f"o{i}", "--device", "cpu", *extra)
        assert result.exit_code == 0, (extra, result.output)
        assert f"(checkpoint {checkpoint.resolve()}," in result.stderr
        assert result.stdout.strip() == str((tmp_path / f"o{i}" / "p.png").resolve())

    # UNETBG_CHECKPOINT still wins over the default, and takes the same forms.
    env = {"UNETBG_CHECKPOINT": str(tmp_path / "gone.pth")}
    gone = _run(src, "-o", tmp_path / "o9", "--device", "cpu", env=env)
    assert gone.exit_code == 2 and "gone.pth" in gone.stderr
    by_id = _run(src, "-o", tmp_path / "o9", "--device", "cpu", env={"UNETBG_CHECKPOINT": "best"})
    assert by_id.exit_code == 0, by_id.output


def test_remove_and_remove_dir_share_the_batch_size_default() -> None:
    from unetbg.cli._options import DEFAULT_BATCH_SIZE

    ctx = click.Context(main)
    for name in ("remove", "remove-dir"):
        (param,) = [p for p in main.get_command(ctx, name).params if p.name == "batch_size"]
        assert param.default == DEFAULT_BATCH_SIZE, name
    assert DEFAULT_BATCH_SIZE is None  # the backend's measured best, chosen where it loads


@pytest.mark.parametrize(
    ("device", "code", "message"),
    [
        ("mps", 2, "unsupported device 'mps'"),
        ("cuda:x", 2, "invalid device 'cuda:x'"),
        ("cuda:7", 2, "cuda:7"),  # well-formed, but this machine lacks it: a usage error too
    ],
)
def test_device_takes_free_text_checked_by_resolve_device(
    tmp_path: Path, checkpoint: Path, device: str, code: int, message: str
) -> None:
    src = write_photo(tmp_path / "p.jpg", 24, 24)
    result = _run(src, "-o", tmp_path / "o", "--checkpoint", checkpoint, "--device", device)
    assert result.exit_code == code, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "o" / "p.png").exists()


def test_remove_and_remove_dir_share_the_output_options() -> None:
    from unetbg.cli._options import output_options_from_flags

    def kind(kind, color, background) -> str:
        return output_options_from_flags(kind, color, background, "png", None, None).kind

    assert kind(None, None, None) == "cutout"
    assert kind(None, "red", None) == "color"
    assert kind(None, None, Path("bg.jpg")) == "background"
    assert kind("mask", None, None) == "mask"
    with pytest.raises(click.UsageError, match="--color needs --kind color"):
        kind("mask", "red", None)
    with pytest.raises(click.UsageError, match="jpeg cannot store kind 'mask'"):
        output_options_from_flags("mask", None, None, "jpeg", None, None)

    def options(name: str) -> dict[str, str]:
        ctx = click.Context(main)
        command = main.get_command(ctx, name)
        return {
            p.name: p.get_help_record(ctx)[1]
            for p in command.params
            if p.name in ("kind", "threshold", "color", "background", "output_format")
        }

    shared = options("remove")
    assert len(shared) == 5 and shared == options("remove-dir")


def test_stdin_to_stdout_as_rembg_users_pipe_it(tmp_path: Path, checkpoint: Path) -> None:
    """`unetbg remove - -o -`: one image in on stdin, its cut-out out on stdout, through
    the installed executable and real pipes; notes stay on stderr."""
    src = write_photo(tmp_path / "p.jpg", 40, 28)
    exe = Path(sys.executable).with_name("unetbg")
    args = [str(exe), "remove", "-", "-o", "-", "--checkpoint", str(checkpoint), "--device", "cpu"]
    done = subprocess.run(
        args, input=src.read_bytes(), capture_output=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()
    with Image.open(io.BytesIO(done.stdout)) as im:
        assert im.format == "PNG" and im.mode == "RGBA" and im.size == (40, 28)
    assert b"model on cpu" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jpg"]  # no folder named '-'

    # stdin into a folder, a file onto stdout; a bad image fails (1), naming stdin.
    into = _run("-", "-o", tmp_path / "out", "--checkpoint", checkpoint, input=src.read_bytes())
    assert into.exit_code == 0, into.output
    assert into.stdout.strip() == str((tmp_path / "out" / "stdin.png").resolve())
    webp = _run(src, "-o", "-", "--checkpoint", checkpoint, "--format", "webp", "--kind", "mask")
    assert webp.exit_code == 0 and webp.stdout_bytes[:4] == b"RIFF", webp.output
    bad = _run("-", "-o", "-", "--checkpoint", checkpoint, input=b"not an image")
    assert bad.exit_code == 1 and "- (stdin): not a recognised image format" in bad.stderr
    assert bad.stdout_bytes == b""
    two = _run("-", src, "-o", "-", "--checkpoint", checkpoint)
    assert two.exit_code == 2 and "take exactly one image" in two.stderr


def test_alpha_curve_switch_clears_the_veil_and_keeps_the_cut(
    tmp_path: Path, checkpoint: Path
) -> None:
    # The tiny checkpoint names no alpha curve: --alpha-curve applies the standard one
    # (0.1 to 0.9), --no-alpha-curve (and the default here) give the raw soft alpha.
    import numpy as np

    photo = write_photo(tmp_path / "in" / "photo.png", 64, 48)
    alphas = {}
    for switch in ("--alpha-curve", "--no-alpha-curve", None):
        out = tmp_path / str(switch)
        flags = [switch] if switch else []
        result = _run("--checkpoint", checkpoint, "-o", out, "--device", "cpu", *flags, photo)
        assert result.exit_code == 0, result.output
        with Image.open(out / "photo.png") as im:
            alphas[switch] = np.asarray(im)[:, :, 3].astype(np.float64) / 255
    raw, curved = alphas["--no-alpha-curve"], alphas["--alpha-curve"]
    np.testing.assert_array_equal(alphas[None], raw)
    assert raw.min() < raw.max() and not np.array_equal(curved, raw)
    expected = np.clip((raw - 0.1) / 0.8, 0, 1)
    assert np.abs(curved - expected).max() <= 2.5 / 255  # 8-bit rounding, twice
    assert (curved[raw <= 0.09] == 0).all() and (curved[raw >= 0.91] == 1).all()
