"""``unetbg web``: the command line it runs and its messages."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from unetbg.cli import main
from unetbg.cli.web import streamlit_command
from unetbg.web import APP_PATH


def test_streamlit_command_runs_the_packaged_page_headless():
    cmd = streamlit_command("0.0.0.0", 9000, 7)
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    assert APP_PATH.is_file()
    options = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert options == {
        "--server.address": "0.0.0.0",
        "--server.port": "9000",
        "--server.headless": "true",
        "--browser.gatherUsageStats": "false",
        "--client.toolbarMode": "minimal",
        "--server.maxUploadSize": "7",
    }


def test_help_lists_the_options():
    result = CliRunner().invoke(main, ["web", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--host", "--port", "--checkpoint"):
        assert option in result.output


def test_missing_checkpoint_file_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["web", "--checkpoint", str(tmp_path / "none.pth")])
    assert result.exit_code == 2
    assert f"checkpoint file not found: {tmp_path / 'none.pth'}" in result.output


def test_without_streamlit_says_how_to_install_it():
    # A None entry in sys.modules makes `import streamlit` fail as if it were absent.
    code = (
        "import sys; sys.modules['streamlit'] = None\nfrom unetbg.cli import main\nmain(['web'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "pip install 'unetbg[web]'" in proc.stderr
