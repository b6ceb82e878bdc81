"""unetbg.durable: atomic writes, their temporaries and the clean-up of stale ones, on real files."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from unetbg.durable import (
    atomic_file,
    file_sha256,
    remove_stale_temporaries,
    temporary_name,
    temporary_target,
)


def test_imports_only_the_standard_library():
    code = "import sys, unetbg.durable\nprint('\\n'.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    assert {m for m in loaded if m.startswith("unetbg.")} == {"unetbg.durable"}


def test_atomic_file_publishes_only_complete_content(tmp_path):
    target = tmp_path / "model.pth"
    with atomic_file(target) as fh:
        fh.write(b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError), atomic_file(target) as fh:
        fh.write(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]
    with pytest.raises(FileExistsError), atomic_file(target, overwrite=False) as fh:
        fh.write(b"second")
    assert target.read_bytes() == b"first"


def test_stale_temporaries_of_the_given_outputs_only_are_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    mine = temporary_name(out / "a.png")
    other = temporary_name(out / "b.png")
    for path in (mine, other, out / ".hidden", out / "a.png"):
        path.write_bytes(b"x")
    assert temporary_target(mine.name) == "a.png"
    assert remove_stale_temporaries([out / "a.png", tmp_path / "missing" / "c.png"]) == 1
    assert sorted(p.name for p in out.iterdir()) == sorted([".hidden", "a.png", other.name])


def test_file_sha256_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 5000  # more than one 1 MiB block
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
