"""Locations: what a job records (a string) read back as a local path or an S3 object,
without any server (the object store itself is tests/jobs/test_object_storage.py)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from unetbg.removal import PlanError
from unetbg.removal.storage import (
    LocalStorage,
    ObjectPath,
    ObjectStorage,
    job_location,
    location,
    storage_for,
)


def test_urls_round_trip_as_jobs_record_them():
    for url in ("s3://bucket/in/sub/a.jpg", "s3://bucket/in", "s3://bucket"):
        assert str(location(url)) == url
    # Slashes that mean nothing in a key are dropped, so one prefix has one spelling.
    assert str(job_location("s3://bucket//in/sub/")) == "s3://bucket/in/sub"


def test_local_paths_stay_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert location("rel/a.jpg") == Path("rel/a.jpg")
    assert job_location("rel") == tmp_path / "rel"
    assert isinstance(storage_for("/x/a.jpg"), LocalStorage)
    assert isinstance(storage_for("s3://bucket/a.jpg"), ObjectStorage)


def test_object_paths_offer_the_path_operations_planning_uses():
    root = ObjectPath.parse("s3://bucket/in")
    item = root / "sub/a.jpg"
    assert str(item) == "s3://bucket/in/sub/a.jpg"
    assert (item.name, item.suffix, str(item.parent)) == ("a.jpg", ".jpg", "s3://bucket/in/sub")
    assert item.is_relative_to(root) and item.relative_to(root) == PurePosixPath("sub/a.jpg")
    # A prefix is a whole key part, and another bucket is another tree.
    assert not ObjectPath.parse("s3://bucket/input/a.jpg").is_relative_to(root)
    assert not ObjectPath.parse("s3://other/in/a.jpg").is_relative_to(root)
    assert ObjectPath.parse("s3://bucket/a.jpg").is_relative_to(ObjectPath.parse("s3://bucket"))


def test_object_paths_are_never_read_as_local_files():
    with pytest.raises(TypeError):
        Path(ObjectPath.parse("s3://bucket/in/a.jpg"))  # not os.PathLike


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://", "names no bucket"),
        ("s3:///key", "names no bucket"),
        ("s3://bucket/../x", "'.' and '..' have no meaning"),
    ],
)
def test_bad_urls_say_what_is_wrong(url, says):
    with pytest.raises(PlanError, match=says):
        location(url)
