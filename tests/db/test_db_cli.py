"""`unetbg db upgrade/downgrade/current` through click and as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from unetbg.cli import main
from unetbg.db import current, head_revision

HEAD = head_revision()


def test_upgrade_current_downgrade(embedded_env: Path, sqlite_url: str):
    runner = CliRunner()

    result = runner.invoke(main, ["db", "current", "--url", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "empty (no revision)" in result.output and "behind" in result.output

    result = runner.invoke(main, ["db", "upgrade", "--url", sqlite_url])
    assert result.exit_code == 0, result.output
    assert f"empty (no revision) -> {HEAD}" in result.output
    assert current(sqlite_url) == HEAD

    result = runner.invoke(main, ["db", "current", "--url", sqlite_url])
    assert result.exit_code == 0, result.output
    assert f"{HEAD} (up to date)" in result.output

    result = runner.invoke(main, ["db", "downgrade", "base", "--url", sqlite_url], input="n\n")
    assert result.exit_code == 1, result.output
    assert current(sqlite_url) == HEAD, "declining the prompt must leave the schema alone"

    result = runner.invoke(main, ["db", "downgrade", "base", "--url", sqlite_url, "--yes"])
    assert result.exit_code == 0, result.output
    assert f"{HEAD} -> empty (no revision)" in result.output
    assert current(sqlite_url) is None


def test_url_option_overrides_the_environment(embedded_env: Path, tmp_path: Path, monkeypatch):
    from_env = f"sqlite:///{tmp_path / 'env.sqlite3'}"
    from_option = f"sqlite:///{tmp_path / 'option.sqlite3'}"
    monkeypatch.setenv("UNETBG_DATABASE_URL", from_env)

    result = CliRunner().invoke(main, ["db", "upgrade", "--url", from_option])
    assert result.exit_code == 0, result.output
    assert current(from_option) == HEAD
    assert current(from_env) is None


def test_unknown_revision_is_a_clean_error(embedded_env: Path, sqlite_url: str):
    result = CliRunner().invoke(main, ["db", "upgrade", "--url", sqlite_url, "--revision", "nope"])
    assert result.exit_code == 1
    assert "Error:" in result.output and "nope" in result.output
    assert "Traceback" not in result.output


def test_output_never_shows_the_password(embedded_env: Path, postgres_url: str):
    result = CliRunner().invoke(main, ["db", "upgrade", "--url", postgres_url])
    assert result.exit_code == 0, result.output
    assert "unetbg:***@127.0.0.1" in result.output
    assert ":unetbg@" not in result.output


def test_unreachable_database_error_is_masked(embedded_env: Path):
    # Port 1 on loopback refuses at once: no server needed for this failure.
    url = "postgresql+psycopg://someone:s3cret-pw@127.0.0.1:1/nothing"
    result = CliRunner().invoke(main, ["db", "current", "--url", url])
    assert result.exit_code == 1
    assert "someone:***@127.0.0.1:1" in result.output
    assert "s3cret-pw" not in result.output
    assert "Traceback" not in result.output


def test_real_process_reads_the_url_from_the_environment(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
    env.update(UNETBG_DATABASE_URL=url, UNETBG_DATA_DIR=str(tmp_path / "data"))
    unetbg = Path(sys.executable).with_name("unetbg")

    done = subprocess.run(
        [str(unetbg), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert f"-> {HEAD}" in done.stdout
    done = subprocess.run(
        [str(unetbg), "db", "current"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert f"{HEAD} (up to date)" in done.stdout
    assert not (tmp_path / "data").exists(), "a configured URL must not touch the default file"
