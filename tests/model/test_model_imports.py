"""unetbg.model is pure PyTorch: importing it loads no service layer and no other unetbg layer
(only the stdlib leaf unetbg.durable)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_model_loads_no_services():
    code = "import sys, unetbg.model\nprint('\\n'.join(sys.modules))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    assert "torch" in loaded and "unetbg.model.net" in loaded
    for banned in ("sqlalchemy", "celery", "albumentations", "pycocotools", "click"):
        assert banned not in loaded, banned
    # unetbg.durable (atomic checkpoint writes) is a leaf that imports only the stdlib.
    ours = {m for m in loaded if m.startswith("unetbg.")} - {"unetbg.durable"}
    assert all(m.startswith("unetbg.model") for m in ours), ours
