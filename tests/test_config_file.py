"""The config file ``<data dir>/config.toml``: written by ``unetbg config set``, read by
every command through :func:`unetbg.settings.get_settings`, a variable winning over it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from unetbg.cli import main
from unetbg.settings import get_settings

UNETBG = Path(sys.executable).parent / "unetbg"


def test_config_set_writes_the_file_every_command_reads(tmp_path: Path):
    env = {"UNETBG_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    for key, value in (("chunk_size", "7"), ("broker_url", "redis://:pw@127.0.0.1:6399/0")):
        done = runner.invoke(main, ["config", "set", key, value], env=env)
        assert done.exit_code == 0, done.output
    assert "pw" not in done.output  # the password is masked when echoed
    path = tmp_path / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it may hold secrets

    settings = get_settings(env)
    assert settings.chunk_size == 7 and settings.broker_url == "redis://:pw@127.0.0.1:6399/0"
    assert not settings.embedded
    # A variable wins over the file; an empty one is no value.
    assert get_settings(env | {"UNETBG_CHUNK_SIZE": "9"}).chunk_size == 9
    assert get_settings(env | {"UNETBG_CHUNK_SIZE": ""}).chunk_size == 7

    # Another process, another command: `unetbg config --json` in a shell with only the
    # data dir set sees the file's values.
    shell = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")} | env
    shown = subprocess.run(
        [str(UNETBG), "config", "--json"], env=shell, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    values = json.loads(shown.stdout)
    assert values["chunk_size"] == 7 and values["embedded"] is False
    assert values["broker_url"] == "redis://:***@127.0.0.1:6399/0"

    done = runner.invoke(main, ["config", "unset", "broker_url"], env=env)
    assert done.exit_code == 0, done.output
    assert get_settings(env).embedded and get_settings(env).chunk_size == 7


def test_config_set_refuses_what_no_command_could_read(tmp_path: Path):
    env = {"UNETBG_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    refusals = {
        ("chunk_size", "lots"): "chunk_size must be an integer",
        ("chunk_size", "0"): "chunk_size must be positive",
        ("data_dir", "/elsewhere"): "UNETBG_DATA_DIR",
        ("no_such", "1"): "no setting 'no_such'",
    }
    for (key, value), why in refusals.items():
        done = runner.invoke(main, ["config", "set", key, value], env=env)
        assert done.exit_code == 2 and why in done.output, (key, done.output)
    assert not (tmp_path / "config.toml").exists()  # nothing written


def test_a_broken_config_file_is_named(tmp_path: Path):
    (tmp_path / "config.toml").write_text('chunk_size = "many"\nbogus = 1\n')
    done = CliRunner().invoke(main, ["config"], env={"UNETBG_DATA_DIR": str(tmp_path)})
    assert done.exit_code == 1
    assert str(tmp_path / "config.toml") in done.output and "bogus" in done.output
    (tmp_path / "config.toml").write_text('chunk_size = "many"\n')
    done = CliRunner().invoke(main, ["config"], env={"UNETBG_DATA_DIR": str(tmp_path)})
    assert f"chunk_size in {tmp_path / 'config.toml'} must be an integer" in done.output
