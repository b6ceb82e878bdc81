"""Shared fixtures: where the real COCO subset is, and a generated fallback."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from prerequisites import unavailable

# The suite never touches the user's (or another checkout's) unetbg state: a database
# another version migrated, a config.toml, a registered "best" checkpoint or a broker
# URL in the environment would change what the tests see. Set before any test imports
# unetbg, and inherited by every worker, server and CLI process the tests start; tests
# that need a setting give it themselves.
for _name in [
    n for n in os.environ if n.startswith("UNETBG_") and not n.startswith("UNETBG_TEST_")
]:
    del os.environ[_name]
os.environ["UNETBG_DATA_DIR"] = tempfile.mkdtemp(prefix="unetbg-tests-")
atexit.register(shutil.rmtree, os.environ["UNETBG_DATA_DIR"], ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "data" / "coco-mini"


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    """The real COCO 2017 subset beside the checkout; skips (saying why) when absent,
    fails instead under CI (``CI`` set), where a skip would hide the tests not run."""
    if not (COCO_MINI / "annotations" / "instances_val2017.json").is_file():
        unavailable(f"real COCO subset not found at {COCO_MINI}")
    return COCO_MINI


@pytest.fixture(scope="session")
def generated_coco(tmp_path_factory):
    """Generated COCO-format data (val split) with every edge case: see tests/cocogen.py."""
    from cocogen import make_coco

    return make_coco(tmp_path_factory.mktemp("coco-generated"), split="val")


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory) -> Path:
    """The real COCO subset when present, else generated COCO-format data (val split)."""
    if (COCO_MINI / "annotations" / "instances_val2017.json").is_file():
        return COCO_MINI
    from cocogen import make_coco

    return make_coco(tmp_path_factory.mktemp("coco-fallback"), split="val").root
