"""docker-compose.yml and the Dockerfile: valid, and safe by default."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"


def _compose_command() -> list[str]:
    """`docker compose` (the plugin) or, failing that, the standalone `docker-compose`."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("neither the docker compose plugin nor docker-compose is installed")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_file_is_valid(tmp_path: Path):
    command = _compose_command()
    # `config` only parses and interpolates: no Docker engine is needed.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("UNETBG_", "REDIS_", "POSTGRES_"))
    }
    env["DOCKER_CONFIG"] = str(tmp_path)  # no user config or credentials involved
    done = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "--profile", "cpu", "--profile", "monitoring"]
        + ["config", "-q"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_only_the_dashboards_and_the_api_are_published_and_on_loopback(compose: dict):
    published = {name: svc["ports"] for name, svc in compose["services"].items() if "ports" in svc}
    assert sorted(published) == ["api", "flower", "prometheus"]
    (port,) = published["flower"]
    assert port.startswith("${UNETBG_FLOWER_BIND:-127.0.0.1}:")
    (port,) = published["prometheus"]
    assert port.startswith("${UNETBG_PROMETHEUS_BIND:-127.0.0.1}:")
    (port,) = published["api"]
    assert port.startswith("${UNETBG_API_BIND:-127.0.0.1}:")


def test_services_and_commands(compose: dict):
    services = compose["services"]
    assert set(services) == {
        "redis",
        "postgres",
        "migrate",
        "worker-gpu",
        "worker-cpu",
        "flower",
        "api",
        "prometheus",
    }
    assert services["migrate"]["command"] == ["unetbg", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    gpu = services["worker-gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert gpu["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["worker-cpu"]["profiles"] == ["cpu"]
    for name in ("worker-gpu", "worker-cpu", "flower", "migrate", "api"):
        env = services[name]["environment"]
        assert (
            env["UNETBG_BROKER_URL"] == "redis://:${REDIS_PASSWORD:-change-me-redis}@redis:6379/0"
        )
        assert env["UNETBG_DATABASE_URL"].startswith(
            "postgresql+psycopg://unetbg:${POSTGRES_PASSWORD"
        )
    for name in ("worker-gpu", "worker-cpu"):
        assert "unetbg-data:/data" in services[name]["volumes"]


def _start_line(service: dict, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """A service's ``sh -c`` start line run by sh, ``unetbg`` replaced by a stub that
    prints its arguments (compose turns "$$" into "$" before the shell sees it)."""
    command = service["command"]
    assert command[:2] == ["sh", "-c"]
    stub = tmp_path / "unetbg"
    stub.write_text('#!/bin/sh\necho "$@"\n')
    stub.chmod(0o755)
    return subprocess.run(
        ["sh", "-c", command[2].replace("$$", "$")],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("worker-gpu", "worker --queues train,infer --concurrency 1"),
        ("worker-cpu", "worker --queues infer"),
        ("api", "serve --host 0.0.0.0 --port 7000"),
    ],
)
def test_services_on_every_interface_refuse_the_placeholder_key(compose, tmp_path, name, args):
    """The workers' metrics and the API listen on 0.0.0.0 in their containers: the key
    guarding them must not be the compose file's public placeholder (nor empty)."""
    service = compose["services"][name]
    placeholder = compose["x-unetbg"]["environment"]["UNETBG_API_KEY"].split(":-")[1][:-1]
    for key in (placeholder, ""):
        refused = _start_line(service, tmp_path, UNETBG_API_KEY=key)
        assert refused.returncode == 1 and refused.stdout == "", (name, key)
        assert "set UNETBG_API_KEY" in refused.stderr
    started = _start_line(service, tmp_path, UNETBG_API_KEY="a-real-key")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith(args)
    if name.startswith("worker"):
        assert started.stdout.split()[-4:] == [
            "--metrics-port",
            "9101",
            "--metrics-host",
            "0.0.0.0",
        ]


def test_compose_header_names_every_published_port(compose: dict):
    header = COMPOSE_FILE.read_text().split("\nx-unetbg:")[0]
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            bind_variable = port.split(":-")[0].removeprefix("${")
            assert bind_variable in header, (name, port)


def test_redis_requires_its_password(compose: dict):
    redis = compose["services"]["redis"]
    assert "--requirepass" in " ".join(redis["command"])
    assert redis["environment"]["REDIS_PASSWORD"] == "${REDIS_PASSWORD:-change-me-redis}"


def test_flower_refuses_to_start_without_basic_auth(compose: dict, tmp_path: Path):
    """Run Flower's own start line with sh, `unetbg` replaced by a stub that records it ran."""
    command = compose["services"]["flower"]["command"]
    assert command[:2] == ["sh", "-c"]
    # Compose turns "$$" into "$" before the shell sees it.
    script = command[2].replace("$$", "$")
    stub = tmp_path / "unetbg"
    stub.write_text('#!/bin/sh\necho "flower started with $UNETBG_FLOWER_BASIC_AUTH: $*"\n')
    stub.chmod(0o755)
    base = {"PATH": f"{tmp_path}:/usr/bin:/bin"}

    refused = subprocess.run(
        ["sh", "-c", script],
        env={**base, "UNETBG_FLOWER_BASIC_AUTH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 1
    assert "set UNETBG_FLOWER_BASIC_AUTH" in refused.stderr
    assert "flower started" not in refused.stdout

    started = subprocess.run(
        ["sh", "-c", script],
        env={**base, "UNETBG_FLOWER_BASIC_AUTH": "a:b"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip().startswith("flower started with a:b: ")


def test_flower_listens_on_all_interfaces_inside_its_container(compose: dict, tmp_path: Path):
    """The published port reaches Flower only if it listens beyond the container's own
    loopback; the host side stays on 127.0.0.1. Runs the compose start line with a stub
    `unetbg` that records its arguments."""
    flower = compose["services"]["flower"]
    script = flower["command"][2].replace("$$", "$")
    stub = tmp_path / "unetbg"
    stub.write_text('#!/bin/sh\necho "$@"\n')
    stub.chmod(0o755)
    done = subprocess.run(
        ["sh", "-c", script],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "UNETBG_FLOWER_BASIC_AUTH": "a:b"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    args = done.stdout.split()
    assert args[0] == "flower"
    assert args[args.index("--address") + 1] == "0.0.0.0"
    (published,) = flower["ports"]
    assert published.startswith("${UNETBG_FLOWER_BIND:-127.0.0.1}:")
    container_port = published.rsplit(":", 1)[1]
    assert args[args.index("--port") + 1] == container_port


def test_dockerfile_pins_torch_and_drops_root():
    text = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "torch==2.14.1 torchvision==0.29.1" in text
    # Workers of the image read and write s3:// jobs' objects themselves.
    assert 'pip install "$(echo /wheels/*.whl)[s3]"' in text
    user_lines = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user_lines and user_lines[-1] != "USER root"


def test_prometheus_scrapes_the_workers_and_the_api_with_the_key(compose: dict):
    """Profile ``monitoring``: the workers' endpoints need the key (they bind every
    interface of their container), which Prometheus reads from the compose secret."""
    service = compose["services"]["prometheus"]
    assert service["profiles"] == ["monitoring"]
    assert service["secrets"] == ["unetbg_api_key"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    config_file = REPO / mounted["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_file.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"unetbg-workers", "unetbg-api"}
    for job in jobs.values():
        assert job["metrics_path"] == "/metrics"
        assert job["authorization"] == {
            "type": "Bearer",
            "credentials_file": "/run/secrets/unetbg_api_key",
        }
    (workers,) = jobs["unetbg-workers"]["dns_sd_configs"]
    assert set(workers["names"]) == {"worker-gpu", "worker-cpu"} and workers["port"] == 9101
    assert jobs["unetbg-api"]["static_configs"] == [{"targets": ["api:7000"]}]
    key = compose["x-unetbg"]["environment"]["UNETBG_API_KEY"]
    assert key == "${UNETBG_API_KEY:-change-me-api-key}"


def test_the_api_refuses_the_placeholder_key_and_serves_the_shared_folders(
    compose: dict, tmp_path: Path
):
    """Run the api service's start line with a stub `unetbg` that prints its arguments."""
    api = compose["services"]["api"]
    script = api["command"][2].replace("$$", "$")
    stub = tmp_path / "unetbg"
    stub.write_text('#!/bin/sh\necho "$@"\n')
    stub.chmod(0o755)

    def start(key: str) -> subprocess.CompletedProcess:
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "UNETBG_API_KEY": key}
        return subprocess.run(
            ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30
        )

    for key in ("", "change-me-api-key"):
        refused = start(key)
        assert refused.returncode == 1 and "set UNETBG_API_KEY" in refused.stderr
        assert refused.stdout == ""
    args = start("a-real-key").stdout.split()
    assert args[:3] == ["serve", "--host", "0.0.0.0"]
    roots = [args[i + 1] for i, a in enumerate(args) if a == "--root"]
    mounts = {v.removesuffix(":ro").rsplit(":", 1)[1] for v in api["volumes"]}
    assert set(roots) == {"/images", "/coco"} <= mounts
    (published,) = api["ports"]
    assert published.startswith("${UNETBG_API_BIND:-127.0.0.1}:")
    assert published.endswith(":" + args[args.index("--port") + 1])
