"""Settings from UNETBG_* variables, and `unetbg config` printing them masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from platformdirs import user_data_dir

from unetbg.cli import main
from unetbg.settings import get_settings, mask_url


def test_defaults_are_the_embedded_setup():
    settings = get_settings({})
    data_dir = Path(user_data_dir("unetbg", appauthor=False))
    assert settings.data_dir == data_dir
    assert settings.broker_url is None and settings.embedded
    assert settings.database_url == f"sqlite:///{data_dir / 'unetbg.sqlite3'}"
    assert settings.runs_dir == data_dir / "runs"
    assert (settings.chunk_size, settings.visibility_timeout, settings.heartbeat_timeout) == (
        16,
        6 * 3600,
        300,
    )
    assert settings.flower_basic_auth is None


def test_values_are_read_from_the_environment(tmp_path: Path):
    settings = get_settings(
        {
            "UNETBG_DATA_DIR": str(tmp_path),
            "UNETBG_BROKER_URL": "redis://:pw@redis:6379/0",
            "UNETBG_DATABASE_URL": "postgresql+psycopg://u:pw@db/unetbg",
            "UNETBG_CHUNK_SIZE": "32",
            "UNETBG_VISIBILITY_TIMEOUT": "7200",
            "UNETBG_FLOWER_BASIC_AUTH": "admin:pw",
            "UNETBG_MAX_UPLOAD_MB": "",  # empty means unset
            "CHUNK_SIZE": "99",  # no prefix: not ours
        }
    )
    assert settings.data_dir == tmp_path
    assert not settings.embedded
    assert settings.database_url == "postgresql+psycopg://u:pw@db/unetbg"
    assert settings.chunk_size == 32 and settings.visibility_timeout == 7200
    assert settings.max_upload_mb == 25


def test_data_dir_expands_home_and_places_the_default_database():
    settings = get_settings({"UNETBG_DATA_DIR": "~/unetbg-data"})
    assert settings.data_dir == Path.home() / "unetbg-data"
    assert settings.database_url == f"sqlite:///{Path.home() / 'unetbg-data' / 'unetbg.sqlite3'}"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("sixteen", "must be an integer"),
        ("1.5", "must be an integer"),
        ("0", "must be positive"),
        ("-4", "must be positive"),
    ],
)
def test_bad_integer_is_a_clear_error(raw: str, problem: str):
    with pytest.raises(ValueError, match=f"UNETBG_CHUNK_SIZE {problem}, got '{raw}'"):
        get_settings({"UNETBG_CHUNK_SIZE": raw})


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql+psycopg://unetbg:s3cret@db:5432/unetbg",
            "postgresql+psycopg://unetbg:***@db:5432/unetbg",
        ),
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("postgresql://user:p%40ss/w0rd@db/x", "postgresql://user:***@db/x"),
        ("postgresql://user@db/x", "postgresql://user@db/x"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("sqlite:////var/lib/unetbg/unetbg.sqlite3", "sqlite:////var/lib/unetbg/unetbg.sqlite3"),
    ],
)
def test_mask_url(url: str, masked: str):
    assert mask_url(url) == masked


def test_masked_hides_every_secret():
    settings = get_settings(
        {
            "UNETBG_BROKER_URL": "redis://:broker-pw@redis:6379/0",
            "UNETBG_DATABASE_URL": "postgresql+psycopg://unetbg:db-pw@db/unetbg",
            "UNETBG_FLOWER_BASIC_AUTH": "admin:flower-pw,ops:other-pw",
        }
    )
    masked = settings.masked()
    assert masked["broker_url"] == "redis://:***@redis:6379/0"
    assert masked["database_url"] == "postgresql+psycopg://unetbg:***@db/unetbg"
    assert masked["flower_basic_auth"] == "admin:***,ops:***"
    assert masked["embedded"] == "False"
    text = json.dumps(masked)
    for secret in ("broker-pw", "db-pw", "flower-pw", "other-pw"):
        assert secret not in text


def test_config_command_prints_masked_settings(tmp_path: Path):
    env = {
        "UNETBG_DATA_DIR": str(tmp_path),
        "UNETBG_BROKER_URL": "redis://:broker-pw@redis:6379/0",
        "UNETBG_DATABASE_URL": "",
        "UNETBG_FLOWER_BASIC_AUTH": "admin:flower-pw",
    }
    runner = CliRunner()
    result = runner.invoke(main, ["config", "--json"], env=env)
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)
    assert values["broker_url"] == "redis://:***@redis:6379/0"
    assert values["flower_basic_auth"] == "admin:***"
    assert values["database_url"] == f"sqlite:///{tmp_path / 'unetbg.sqlite3'}"
    assert values["data_dir"] == str(tmp_path)

    result = runner.invoke(main, ["config"], env=env)
    assert result.exit_code == 0, result.output
    assert "broker-pw" not in result.output and "flower-pw" not in result.output
    assert "redis://:***@redis:6379/0" in result.output


def test_config_command_reports_a_bad_value():
    result = CliRunner().invoke(main, ["config"], env={"UNETBG_CHUNK_SIZE": "lots"})
    assert result.exit_code == 1
    assert "UNETBG_CHUNK_SIZE must be an integer, got 'lots'" in result.output


def test_config_json_keeps_value_types(tmp_path: Path):
    env = {
        "UNETBG_DATA_DIR": str(tmp_path),
        "UNETBG_BROKER_URL": "",
        "UNETBG_DATABASE_URL": "",
        "UNETBG_CHUNK_SIZE": "32",
        "UNETBG_FLOWER_BASIC_AUTH": "admin:flower-pw",
        "UNETBG_FLOWER_URL": "",
    }
    result = CliRunner().invoke(main, ["config", "--json"], env=env)
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)
    assert values["chunk_size"] == 32 and values["max_upload_mb"] == 25
    assert values["visibility_timeout"] == 6 * 3600
    assert values["broker_url"] is None and values["flower_url"] is None
    assert values["embedded"] is True
    assert values["flower_basic_auth"] == "admin:***"
    assert values["data_dir"] == str(tmp_path)

    # The human listing is unchanged: text, "(unset)" for missing values.
    lines = CliRunner().invoke(main, ["config"], env=env).output.splitlines()
    listed = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    assert listed["chunk_size"] == "32" and listed["embedded"] == "True"
    assert listed["broker_url"] == "(unset)"


def test_checkpoint_variable_is_defined_once():
    import click

    from unetbg import settings
    from unetbg.cli import _service, main, web

    assert settings.CHECKPOINT_ENV == "UNETBG_CHECKPOINT"
    assert web.CHECKPOINT_ENV is settings.CHECKPOINT_ENV
    assert _service.CHECKPOINT_ENV is settings.CHECKPOINT_ENV  # checkpoint_option's
    # Every command that takes a checkpoint reads it from that one variable.
    ctx = click.Context(main)
    envvars = {
        name: param.envvar
        for name in main.list_commands(ctx)
        for param in getattr(main.get_command(ctx, name), "params", [])
        if param.name == "checkpoint"
    }
    commands = {"remove", "remove-dir", "evaluate", "submit-evaluate", "serve", "web"}
    assert envvars == dict.fromkeys(commands, settings.CHECKPOINT_ENV)
