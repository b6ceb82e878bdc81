"""Import-direction guards: the model stays pure PyTorch; the CLI root stays light."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_model_imports_no_service_layers():
    loaded = _modules_after("import unetbg.model")
    assert "torch" in loaded
    for banned in ("sqlalchemy", "celery", "click", "unetbg.db", "unetbg.training", "unetbg.cli"):
        assert banned not in loaded, f"unetbg.model pulled in {banned}"


def test_db_imports_no_torch():
    loaded = _modules_after("import unetbg.db.models, unetbg.db.session")
    assert "sqlalchemy" in loaded
    assert "torch" not in loaded


def test_cli_help_imports_no_torch():
    code = (
        "from click.testing import CliRunner\n"
        "from unetbg.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'remove-dir' in r.output\n"
    )
    loaded = _modules_after(code)
    assert "torch" not in loaded
