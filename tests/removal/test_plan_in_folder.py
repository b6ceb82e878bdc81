"""``plan_in_folder``: a few files of a folder tree planned as ``plan_folder`` plans them
within the whole tree (``remove-dir --watch`` plans each new file so), on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unetbg.removal import PlanError, plan_folder, plan_in_folder

#: Names that clash in every way the module docstring of planning names: suffixes,
#: case, a renamed name meeting another's plain one, a ``~N`` counter, a folder that
#: holds outputs, an empty one that holds none, and names that clash with nothing.
TREE = [
    "a.jpg",
    "A.PNG",
    "a.jpg.jpg",
    "a.jpg~1.jpg",
    "a.b.jpg",
    "ab.jpg",
    "b.jpg",
    "notes.txt",
    "sub/a.jpg",
    "sub/x.png/y.jpg",
    "sub/x.jpg",
    "sub/z.jpg",
    "sub/deeper/z.jpeg",
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    source = tmp_path / "in"
    for name in TREE:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(b"not read by planning")
    (source / "sub" / "z.png").mkdir()  # empty: holds no outputs, so z.jpg keeps z.png
    (source / ".hidden").mkdir()
    (source / ".hidden" / "h.jpg").write_bytes(b"")
    (source / ".h.jpg").write_bytes(b"")
    return source


@pytest.mark.parametrize("output_format", ["png", "jpeg"])
def test_each_file_alone_is_planned_as_in_the_whole_folder(tree, tmp_path, output_format):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "z.png").write_bytes(b"")  # an existing output: skipped unless overwrite
    files = sorted(
        p
        for p in tree.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(tree).parts)
    )
    for overwrite in (False, True):
        whole = {
            plan.source: plan for plan in plan_folder(tree, out, output_format, False, overwrite)
        }
        for path in files:
            assert plan_in_folder(tree, out, [path], output_format, False, overwrite) == [
                whole[path]
            ], path
        together = plan_in_folder(tree, out, reversed(files), output_format, False, overwrite)
        assert {plan.source: plan for plan in together} == whole
    names = {str(p.relative_to(tree)): whole[p].output.name for p in files if whole[p].output}
    assert names["a.jpg"] == ("a.jpg.png" if output_format == "png" else "a.jpg.jpg")
    if output_format == "png":
        assert names["sub/x.jpg"] == "x.jpg.png"  # the folder x.png/ holds outputs
        assert names["sub/z.jpg"] == "z.png"
        assert names["b.jpg"] == "b.png"
        assert whole[tree / "sub" / "z.jpg"].skip_reason is None  # overwrite, last round


def test_what_a_folder_plan_leaves_out_is_left_out(tree, tmp_path):
    out = tmp_path / "out"
    (tree / "linked").symlink_to(tree / "sub", target_is_directory=True)
    (tree / "elsewhere.jpg").symlink_to(tmp_path / "outside.jpg")
    (tmp_path / "outside.jpg").write_bytes(b"")
    asked = [
        tree / ".h.jpg",
        tree / ".hidden" / "h.jpg",
        tree / "linked" / "x.jpg",  # under a symlinked folder
        tree / "gone.jpg",
        tree / "sub",  # a folder
        tmp_path / "outside.jpg",  # not under the input folder
    ]
    assert plan_in_folder(tree, out, asked) == []
    # Planned with a reason, as in the whole folder.
    planned = plan_in_folder(tree, out, [tree / "elsewhere.jpg", tree / "notes.txt"])
    assert {plan.source.name: plan.skip_reason for plan in planned} == {
        "elsewhere.jpg": "symlink points outside the input folder; use --follow-symlinks",
        "notes.txt": "not an image extension",
    }
    (followed,) = plan_in_folder(tree, out, [tree / "elsewhere.jpg"], follow_symlinks=True)
    assert followed.skip_reason is None and followed.output == out / "elsewhere.png"


def test_the_folders_are_checked_as_a_folder_plan_checks_them(tree, tmp_path):
    with pytest.raises(PlanError, match="does not exist"):
        plan_in_folder(tmp_path / "missing", tmp_path / "out", [tree / "a.jpg"])
    with pytest.raises(PlanError, match="inside the input folder"):
        plan_in_folder(tree, tree / "sub" / "out", [tree / "a.jpg"])
    assert not os.path.exists(tree / "sub" / "out")
