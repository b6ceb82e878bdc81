"""``unetbg remove-dir s3://B/in s3://B/out --watch``: a prefix on a real S3 API server
(moto's server mode on loopback) polled by a real watching process in embedded mode."""

from __future__ import annotations

import io
import os
import signal
import uuid

import boto3
import pytest
from PIL import Image
from watch_process import Watcher

from s3_fixtures import S3Server, s3_server  # noqa: F401 (the fixture)
from service_fixtures import STARTUP_S, copy_photos, wait_until

pytestmark = pytest.mark.services


def _objects(client, bucket: str, prefix: str) -> dict[str, dict]:
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    return {o["Key"]: o for o in listing.get("Contents", [])}


def test_a_polled_prefix_takes_new_and_replaced_objects(
    tmp_path,
    coco_mini,
    checkpoint,
    s3_server: S3Server,  # noqa: F811 (the fixture imported above)
):
    client = boto3.client("s3", endpoint_url=s3_server.endpoint, **_keys(s3_server))
    bucket = f"unetbg-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    photos = copy_photos(coco_mini, tmp_path / "photos", 3)
    client.put_object(Bucket=bucket, Key="in/first.jpg", Body=photos[0].read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNETBG_", "AWS_"))}
    env |= s3_server.env | {"UNETBG_DATA_DIR": str(tmp_path / "data")}
    src, out = f"s3://{bucket}/in", f"s3://{bucket}/out"
    watcher = Watcher(tmp_path, src, out, checkpoint, env, options=("--poll", "0.5"))
    try:

        def output(key: str):
            return lambda: key in _objects(client, bucket, "out") or watcher.proc.poll() is not None

        wait_until(output("out/first.png"), STARTUP_S, f"the first pass\n{watcher.log()}")
        # A new object becomes an item; a hidden one and one that is not an image do not.
        client.put_object(Bucket=bucket, Key="in/sub/arrived.jpg", Body=photos[1].read_bytes())
        client.put_object(Bucket=bucket, Key="in/.hidden.jpg", Body=photos[1].read_bytes())
        client.put_object(Bucket=bucket, Key="in/notes.txt", Body=b"not an image")
        wait_until(output("out/sub/arrived.png"), STARTUP_S, watcher.log())
        # An object replaced under its key (a new ETag) replaces its output.
        before = _objects(client, bucket, "out")["out/first.png"]["ETag"]
        client.put_object(Bucket=bucket, Key="in/first.jpg", Body=photos[2].read_bytes())
        wait_until(
            lambda: (
                _objects(client, bucket, "out")["out/first.png"]["ETag"] != before
                or watcher.proc.poll() is not None
            ),
            STARTUP_S,
            watcher.log(),
        )
        assert watcher.signal(signal.SIGTERM) == 0, watcher.log()
    finally:
        if watcher.proc.poll() is None:
            watcher.proc.kill()
    job = watcher.status()
    assert job["state"] == "succeeded", watcher.log()
    assert job["items"] == {"succeeded": 2}, job["item_list"]  # one item per object
    assert sorted(_objects(client, bucket, "out")) == ["out/first.png", "out/sub/arrived.png"]
    body = client.get_object(Bucket=bucket, Key="out/first.png")["Body"].read()
    with Image.open(photos[2]) as replaced, Image.open(io.BytesIO(body)) as cut:
        assert cut.size == replaced.size and cut.mode == "RGBA"  # the new content's cut-out
    assert "added 1 image: arrived.jpg" in watcher.log()
    assert "added 1 image: first.jpg" in watcher.log()


def _keys(server: S3Server) -> dict:
    return {
        "aws_access_key_id": server.env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": server.env["AWS_SECRET_ACCESS_KEY"],
        "region_name": server.env["AWS_DEFAULT_REGION"],
    }
