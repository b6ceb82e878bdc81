"""remove-dir from one S3 prefix to another (issue 23 item 4), against a real S3 API
server on loopback (tests/s3_fixtures.py): in this process without a broker, and on a
real prefork Celery worker that reads and writes the objects itself."""

from __future__ import annotations

import io
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from s3_fixtures import S3Server, s3_server  # noqa: F401 (the fixture)
from service_fixtures import Cluster, copy_photos, make_cluster, use_cluster
from unetbg import jobs
from unetbg.cli import main
from unetbg.jobs.errors import JobError

pytest.importorskip("s3fs", reason="object storage needs the s3 extra: pip install -e '.[s3]'")


@pytest.fixture
def aws(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:  # noqa: F811
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server


@pytest.fixture
def client(aws: S3Server):
    """A plain boto3 client, independent of the code under test, to set up and inspect."""
    import boto3

    return boto3.client("s3", endpoint_url=aws.endpoint)


@pytest.fixture
def bucket(client) -> str:
    name = f"unetbg-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


def _upload(client, bucket: str, coco_mini: Path, tmp_path: Path, prefix: str = "in") -> dict:
    """5 real COCO photos under ``prefix`` (one in ``sub/``), a text file and a hidden
    object; returns key -> bytes of the photos."""
    photos = {}
    for path in copy_photos(coco_mini, tmp_path / "photos", 5):
        key = f"{prefix}/{path.relative_to(tmp_path / 'photos').as_posix()}"
        photos[key] = path.read_bytes()
        client.put_object(Bucket=bucket, Key=key, Body=photos[key])
    client.put_object(Bucket=bucket, Key=f"{prefix}/notes.txt", Body=b"not an image")
    client.put_object(Bucket=bucket, Key=f"{prefix}/.hidden/x.jpg", Body=b"hidden")
    return photos


def _objects(client, bucket: str, prefix: str) -> dict[str, dict]:
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    return {o["Key"]: o for o in listing.get("Contents", [])}


def _image(client, bucket: str, key: str) -> Image.Image:
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return Image.open(io.BytesIO(body))


def _run_here(source: str, output: str, checkpoint: Path, **kw) -> jobs.JobView:
    job_id = jobs.create_remove_dir_job(source, output, str(checkpoint), chunk_size=2, **kw)
    jobs.dispatch(job_id)  # embedded: runs here
    return jobs.get_job(job_id)


def _expected_outputs(photos: dict, prefix: str = "out") -> set[str]:
    return {prefix + k.removeprefix("in").removesuffix(".jpg") + ".png" for k in photos}


def test_remove_dir_s3_to_s3_in_process(
    embedded_env, client, bucket, coco_mini, tmp_path, checkpoint
):
    photos = _upload(client, bucket, coco_mini, tmp_path)
    job = _run_here(f"s3://{bucket}/in", f"s3://{bucket}/out", checkpoint)
    assert job.state == "succeeded", job
    assert job.items == {"succeeded": 5, "skipped": 1}  # notes.txt; the hidden one unseen
    outputs = _objects(client, bucket, "out")
    assert set(outputs) == _expected_outputs(photos)
    for key, data in photos.items():
        out_key = "out" + key.removeprefix("in").removesuffix(".jpg") + ".png"
        with Image.open(io.BytesIO(data)) as src, _image(client, bucket, out_key) as res:
            assert res.size == src.size and res.mode == "RGBA"
    items = {i.source_path: i for i in jobs.list_items(job.id)}
    assert items[f"s3://{bucket}/in/notes.txt"].error == "not an image extension"
    first = items[f"s3://{bucket}/{sorted(photos)[0]}"]
    assert first.output_path.startswith(f"s3://{bucket}/out/") and first.state == "succeeded"

    # The same command again: every output exists, nothing is written again.
    tags = {k: o["ETag"] for k, o in outputs.items()}
    again = _run_here(f"s3://{bucket}/in", f"s3://{bucket}/out", checkpoint)
    assert again.state == "succeeded" and again.items == {"skipped": 6}
    assert {k: o["ETag"] for k, o in _objects(client, bucket, "out").items()} == tags


def test_one_bad_object_fails_only_itself_and_a_rerun_does_the_rest(
    embedded_env, client, bucket, coco_mini, tmp_path, checkpoint
):
    photos = _upload(client, bucket, coco_mini, tmp_path)
    client.put_object(Bucket=bucket, Key="in/broken.jpg", Body=b"this is not a JPEG")
    first = _run_here(f"s3://{bucket}/in", f"s3://{bucket}/out", checkpoint)
    assert first.state == "partial"
    assert first.items == {"succeeded": 5, "failed": 1, "skipped": 1}
    (failed,) = jobs.list_items(first.id, states=["failed"])
    assert failed.source_path == f"s3://{bucket}/in/broken.jpg" and failed.error
    assert set(_objects(client, bucket, "out")) == _expected_outputs(photos)

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, "JPEG")
    client.put_object(Bucket=bucket, Key="in/broken.jpg", Body=buf.getvalue())  # repaired
    second = _run_here(f"s3://{bucket}/in", f"s3://{bucket}/out", checkpoint)
    assert second.state == "succeeded"
    assert second.items == {"skipped": 6, "succeeded": 1}
    with _image(client, bucket, "out/broken.png") as res:
        assert res.size == (40, 30)


def test_output_names_clash_as_in_folders(embedded_env, client, bucket, tmp_path, checkpoint):
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (20, 120, 10)).save(buf, "PNG")
    for key in ("in/a.jpg", "in/a.png"):  # both would become a.png
        client.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    job = _run_here(f"s3://{bucket}/in", f"s3://{bucket}/out", checkpoint)
    assert job.state == "succeeded", job
    assert set(_objects(client, bucket, "out")) == {"out/a.jpg.png", "out/a.png.png"}


@pytest.mark.parametrize(
    ("source", "output", "says"),
    [
        (
            "s3://no-such-bucket-{u}/in",
            "s3://{b}/out",
            "bucket 'no-such-bucket-{u}' does not exist",
        ),
        (
            "s3://{b}/in",
            "s3://no-such-bucket-{u}/out",
            "bucket 'no-such-bucket-{u}' does not exist",
        ),
        ("s3://{b}/nothing-here", "s3://{b}/out", "no images found in s3://{b}/nothing-here"),
        ("s3://{b}/in", "s3://{b}/in/out", "inside the input folder"),
        ("s3://{b}/in/a.jpg", "s3://{b}/out", "is an object, not a prefix"),
        ("s3://{b}/in", "{tmp}/out", "must both be local folders or both object storage"),
    ],
)
def test_refused_before_anything_is_recorded(
    embedded_env, client, bucket, tmp_path, checkpoint, source, output, says
):
    client.put_object(Bucket=bucket, Key="in/a.jpg", Body=b"x")
    names = {"b": bucket, "u": uuid.uuid4().hex[:8], "tmp": tmp_path}
    source, output, says = (s.format(**names) for s in (source, output, says))
    with pytest.raises(JobError, match=None) as caught:
        jobs.create_remove_dir_job(source, output, str(checkpoint))
    assert says in str(caught.value)
    assert jobs.list_jobs() == []
    assert _objects(client, bucket, "out") == {}


def test_unreachable_endpoint_is_a_clear_error(
    embedded_env, aws, monkeypatch, tmp_path, checkpoint
):
    from service_fixtures import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(JobError) as caught:
        jobs.create_remove_dir_job("s3://anything/in", "s3://anything/out", str(checkpoint))
    assert "cannot list input s3://anything/in" in str(caught.value)
    assert endpoint in str(caught.value)
    assert jobs.list_jobs() == []


def test_without_s3fs_the_error_names_the_extra(embedded_env, monkeypatch, tmp_path, checkpoint):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # what `import s3fs` meets uninstalled
    with pytest.raises(JobError, match=r"need the s3fs package: pip install 'unetbg\[s3\]'"):
        jobs.create_remove_dir_job("s3://bucket/in", "s3://bucket/out", str(checkpoint))
    assert jobs.list_jobs() == []


def test_cli_takes_urls_and_refuses_options_for_folders(
    embedded_env, client, bucket, coco_mini, tmp_path, checkpoint
):
    photos = _upload(client, bucket, coco_mini, tmp_path)
    src, out = f"s3://{bucket}/in", f"s3://{bucket}/out"
    model = ["--checkpoint", str(checkpoint)]
    # A prefix is polled, not settled; polling is for prefixes that are watched.
    settle = CliRunner().invoke(main, ["remove-dir", src, out, *model, "--watch", "--settle", "1"])
    assert settle.exit_code == 2 and "--settle needs --watch on a local folder" in settle.output
    poll = CliRunner().invoke(main, ["remove-dir", src, out, *model, "--poll", "1"])
    assert poll.exit_code == 2 and "--poll needs --watch on s3:// prefixes" in poll.output
    local = CliRunner().invoke(
        main, ["remove-dir", str(tmp_path), str(tmp_path / "o"), *model, "--watch", "--poll", "1"]
    )
    assert local.exit_code == 2 and "--poll needs --watch on s3://" in local.output
    assert jobs.list_jobs() == []

    result = CliRunner().invoke(main, ["remove-dir", src, out, "--checkpoint", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert set(_objects(client, bucket, "out")) == _expected_outputs(photos)


# ------------------------------------------------------------------- on a Celery worker


@pytest.fixture(scope="module")
def s3_cluster(redis_server, s3_server, tmp_path_factory):  # noqa: F811
    """A worker whose only way to the images is the S3 API (AWS_* in its environment)."""
    cluster = make_cluster(tmp_path_factory.mktemp("s3-cluster"), redis_server, **s3_server.env)
    cluster.start_worker()
    yield cluster
    cluster.stop_worker()


@pytest.mark.services
@pytest.mark.timeout(1800)  # a worker's first model load took minutes on a loaded CI box
def test_remove_dir_s3_to_s3_on_a_worker(
    s3_cluster: Cluster, monkeypatch, client, bucket, coco_mini, tmp_path, checkpoint
):
    use_cluster(s3_cluster, monkeypatch)
    photos = _upload(client, bucket, coco_mini, tmp_path)
    client.put_object(Bucket=bucket, Key="in/broken.jpg", Body=b"this is not a JPEG")
    # backend torch: what is tested is where images come from, not the fastest backend
    # (auto exports the model to ONNX first: minutes on a loaded machine).
    src, out = f"s3://{bucket}/in", f"s3://{bucket}/out"
    job_id = jobs.create_remove_dir_job(src, out, str(checkpoint), backend="torch")
    jobs.dispatch(job_id)
    try:
        job = jobs.wait_for_job(job_id, poll_s=0.3, timeout_s=900)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{s3_cluster.log_tail()}") from None
    assert job.state == "partial", (job, s3_cluster.log_tail())
    assert job.items == {"succeeded": 5, "failed": 1, "skipped": 1}
    assert job.worker_host  # ran on the worker
    assert set(_objects(client, bucket, "out")) == _expected_outputs(photos)

    again = jobs.create_remove_dir_job(src, out, str(checkpoint), backend="torch")
    jobs.dispatch(again)
    second = jobs.wait_for_job(again, poll_s=0.3, timeout_s=900)
    # Only the broken image is tried again (and fails again); the five are skipped.
    assert second.items == {"skipped": 6, "failed": 1}, (second, s3_cluster.log_tail())
