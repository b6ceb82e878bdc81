"""``plan_folder_in_batches``: a folder tree planned in batches as it is walked (streaming
submission, issue 23 item 3) gives exactly what ``plan_folder`` gives for the whole
tree — output names of clashing inputs included — on real files and folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unetbg.removal import PlanError, plan_folder
from unetbg.removal.streaming import plan_folder_in_batches

#: Every kind of clash the planning module names: suffixes, case, a renamed name meeting
#: another's plain one, a ``~N`` counter, a folder that holds outputs (``x.png/``, and
#: ``deep.png/`` whose only image is two levels down), an empty one that holds none
#: (``z.png/``), folders whose names differ only in case (their outputs share a folder
#: on a case-insensitive file system), and names that clash with nothing.
TREE = [
    "a.jpg",
    "A.PNG",
    "a.jpg.jpg",
    "a.jpg~1.jpg",
    "a.b.jpg",
    "ab.jpg",
    "b.jpg",
    "notes.txt",
    "x.jpg",
    "x.png/y.jpg",
    "deep.jpg",
    "deep.png/one/two.jpg",
    "z.jpg",
    "Sub/a.jpg",
    "sub/A.png",
    "sub/c.jpg",
    "SUB/c.webp",
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    source = tmp_path / "in"
    for name in TREE:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(b"not read by planning")
    (source / "z.png").mkdir()  # empty: holds no outputs, so z.jpg keeps z.png
    (source / ".hidden").mkdir()
    (source / ".hidden" / "h.jpg").write_bytes(b"")
    os.symlink(source / "b.jpg", source / "link.jpg")
    os.symlink(source / "gone.jpg", source / "broken.jpg")
    return source


def _streamed(source: Path, out: Path, batch: int, **options) -> list:
    batches = list(plan_folder_in_batches(source, out, batch=batch, **options))
    assert all(batches)
    return [plan for plans in batches for plan in plans]


@pytest.mark.parametrize("batch", [1, 2, 3, 1000])
@pytest.mark.parametrize("overwrite", [False, True])
def test_batches_plan_what_the_whole_folder_plan_plans(tree, tmp_path, batch, overwrite):
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"")  # an existing output: skipped unless overwrite
    whole = plan_folder(tree, out, overwrite=overwrite)
    streamed = _streamed(tree, out, batch, overwrite=overwrite)
    assert len(streamed) == len(whole)  # each entry once
    assert sorted(streamed, key=str) == sorted(whole, key=str)
    names = {str(p.relative): p.output.name for p in streamed if p.output}
    # The clashes were seen, though their members' batches were small.
    assert (names["a.jpg"], names["A.PNG"]) == ("a.jpg.png", "A.PNG.png")
    assert names["x.jpg"] == "x.jpg.png" and names["deep.jpg"] == "deep.jpg.png"
    assert names["z.jpg"] == "z.png"
    assert (names["Sub/a.jpg"], names["sub/A.png"]) == ("a.jpg.png", "A.png.png")
    assert (names["sub/c.jpg"], names["SUB/c.webp"]) == ("c.jpg.png", "c.webp.png")


def test_a_folder_is_checked_before_the_walk(tmp_path):
    with pytest.raises(PlanError, match="does not exist"):
        plan_folder_in_batches(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "in").mkdir()
    with pytest.raises(PlanError, match="inside the input folder"):
        plan_folder_in_batches(tmp_path / "in", tmp_path / "in" / "out")


def test_a_flat_folder_comes_in_batches_of_about_the_size_asked(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for n in range(25):
        (source / f"p{n:03d}.jpg").write_bytes(b"")
    sizes = [len(plans) for plans in plan_folder_in_batches(source, tmp_path / "out", batch=10)]
    assert sizes == [10, 10, 5]
