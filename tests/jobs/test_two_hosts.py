"""Two hosts that share no disk: the submitter (host A: this process, with Redis and
PostgreSQL on its loopback) and a worker on host B (its own network and mount namespace,
reaching A's services through one relayed port each, and unable to see A's folders).

An ``s3://`` job succeeds on B, which reaches the S3 server (on A's loopback) through its
relay; a job on A's local folders cannot be done on B and fails with a message that says
so on every item, never as a silent loss or a wall of "file not found".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from hosts import OtherHost, namespaces_problem
from prerequisites import unavailable
from s3_fixtures import S3Server, s3_server  # noqa: F401 (the fixture)
from service_fixtures import (
    Cluster,
    clear_unetbg_env,
    postgres_admin_engine,
    scratch_postgres_database,
)
from unetbg import jobs
from unetbg.db import schema

pytestmark = pytest.mark.services


@pytest.fixture
def host_b() -> Iterator[OtherHost]:
    problem = namespaces_problem()
    if problem:
        unavailable(f"two-host test: {problem}")
    host = OtherHost()
    try:
        yield host
    finally:
        host.close()


@pytest.fixture
def two_hosts(
    redis_server,
    host_b,
    s3_server: S3Server,  # noqa: F811 (the fixture imported above)
    tmp_path_factory,
    monkeypatch,
) -> Iterator[Cluster]:
    """A cluster whose database is PostgreSQL on A and whose one worker runs on B.

    ``cluster.env`` is A's view (loopback addresses); B's worker gets the relayed ones.
    ``cluster.hidden`` lists the folders B cannot see: put A's job files there.
    """
    admin = postgres_admin_engine()
    try:
        with scratch_postgres_database(admin, "unetbg_hosts") as url:
            schema.upgrade(url)
            cluster = Cluster(tmp_path_factory.mktemp("host-b"), redis_server.url)
            cluster.database_url = cluster.env["UNETBG_DATABASE_URL"] = url
            cluster.hidden = [tmp_path_factory.mktemp("host-a")]
            clear_unetbg_env(monkeypatch)
            for key, value in (cluster.env | s3_server.env).items():
                monkeypatch.setenv(key, value)
            s3_host, s3_port = host_b.reach(s3_server.port)
            b_env = _as_seen_from(host_b, cluster.env) | s3_server.env
            b_env["AWS_ENDPOINT_URL"] = f"http://{s3_host}:{s3_port}"
            cluster.start_worker(
                queues="infer",
                name="b",
                env=b_env,
                wrap=lambda argv: host_b.command(argv, cluster.hidden),
            )
            try:
                yield cluster
            finally:
                cluster.stop_worker()
    finally:
        admin.dispose()


def _as_seen_from(host: OtherHost, env: dict[str, str]) -> dict[str, str]:
    """``env``'s broker and database URLs, pointed at relays B can reach."""
    seen = {}
    for key in ("UNETBG_BROKER_URL", "UNETBG_DATABASE_URL"):
        url = make_url(env[key]) if "DATABASE" in key else None
        if url is not None:
            host_name, port = host.reach(url.port or 5432)
            seen[key] = url.set(host=host_name, port=port).render_as_string(hide_password=False)
        else:
            scheme, rest = env[key].split("://", 1)
            address, _, path = rest.partition("/")
            host_name, port = host.reach(int(address.rsplit(":", 1)[1]))
            seen[key] = f"{scheme}://{host_name}:{port}/{path}"
    return seen


def _run(cluster: Cluster, job_id: str, timeout_s: float):
    """Dispatch ``job_id`` and wait until it is final (B's worker log on a timeout)."""
    jobs.dispatch(job_id)
    try:
        return jobs.wait_for_job(job_id, poll_s=0.3, timeout_s=timeout_s)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{cluster.log_tail()}") from None


def _photos(folder: Path, count: int = 3) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (48, 40), (40 * i, 90, 160)).save(folder / f"p{i}.jpg", quality=90)
    return folder


def test_a_worker_that_cannot_see_a_local_folder_fails_every_item_saying_so(two_hosts, checkpoint):
    a_root = two_hosts.hidden[0]
    photos, out = _photos(a_root / "in"), a_root / "out"
    job_id = jobs.create_remove_dir_job(photos, out, str(checkpoint))
    job = _run(two_hosts, job_id, timeout_s=120)

    assert job.state == "failed", two_hosts.log_tail()
    assert job.items == {"failed": 3}
    for item in jobs.list_items(job_id):
        assert (
            item.error.startswith("this worker (host-b:")
            and "cannot see the input folder" in item.error
        )
        assert str(photos) in item.error and "s3://" in item.error
    assert not out.exists() or not any(out.iterdir())  # nothing half-written on A
    assert sorted(p.name for p in photos.iterdir()) == ["p0.jpg", "p1.jpg", "p2.jpg"]


def test_an_s3_job_succeeds_on_a_worker_that_shares_no_disk(two_hosts, checkpoint, tmp_path):
    import io
    import uuid

    import boto3
    from PIL import Image

    client = boto3.client("s3")  # A's view: the S3 server on loopback (AWS_* set above)
    bucket = f"hosts-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    for name in ("a.jpg", "sub/b.jpg"):
        body = io.BytesIO()
        Image.new("RGB", (48, 40), (200, 120, 40)).save(body, "JPEG")
        client.put_object(Bucket=bucket, Key=f"in/{name}", Body=body.getvalue())
    # backend torch: what is tested is where the images come from, not the fastest backend.
    job_id = jobs.create_remove_dir_job(
        f"s3://{bucket}/in", f"s3://{bucket}/out", str(checkpoint), backend="torch"
    )
    job = _run(two_hosts, job_id, timeout_s=600)

    assert job.state == "succeeded", two_hosts.log_tail()
    assert job.items == {"succeeded": 2}
    listing = client.list_objects_v2(Bucket=bucket, Prefix="out/")
    assert sorted(o["Key"] for o in listing["Contents"]) == ["out/a.png", "out/sub/b.png"]
    with Image.open(
        io.BytesIO(client.get_object(Bucket=bucket, Key="out/a.png")["Body"].read())
    ) as out:
        assert out.mode == "RGBA" and out.size == (48, 40)
