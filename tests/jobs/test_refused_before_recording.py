"""Mistakes found before anything is recorded (README: exit status 2 means nothing was
recorded): a broker that does not answer, an output folder that cannot be created or
written, a backend this process lacks when it would run the job. The real ``unetbg``
command in a subprocess, real photos, a fresh job database each time."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

from service_fixtures import VENV_BIN, free_port


def run(env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "unetbg"), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An embedded environment with its own data dir (and so its own job database)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UNETBG_")}
    return clean | {"UNETBG_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}


def recorded(env: dict[str, str]) -> list:
    """Every job in the environment's database (read here: reading needs no broker)."""
    from unetbg import jobs
    from unetbg.settings import get_settings

    settings = get_settings(env)
    if not (settings.data_dir / "unetbg.sqlite3").exists():
        return []  # not even a database was made
    return jobs.list_jobs(limit=100, settings=settings)


def test_unreachable_broker_records_nothing(env, photos, checkpoint, coco_mini, tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    env = env | {"UNETBG_BROKER_URL": url}
    submissions = {
        "remove-dir": ("remove-dir", photos, tmp_path / "out", "--checkpoint", checkpoint),
        "submit-evaluate": ("submit-evaluate", checkpoint, "--coco-root", coco_mini),
        "submit-train": ("submit-train", "--preset", "smoke", "--coco-root", coco_mini),
    }
    for name, args in submissions.items():
        done = run(env, *args)
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert done.stdout == ""  # no job id: there is no job
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and url in errors[0], (name, done.stderr)
        assert "unreachable" in errors[0] and "nothing was recorded" in errors[0]
    assert recorded(env) == []
    assert not (tmp_path / "out").exists()


def test_unusable_output_folder_is_refused_before_the_model_loads(env, photos, tmp_path):
    photo = next(photos.glob("*.jpg"))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for output, why in ((Path("/proc/nope"), "cannot create it in /proc"), (a_file / "sub", "is not a folder")):  # fmt: skip
        removed = run(env, "remove", photo, "-o", output)
        assert removed.returncode == 2, removed.stderr
        assert why in removed.stderr and str(output) in removed.stderr
        assert "model on" not in removed.stderr  # refused before the model loaded
        job = run(env, "remove-dir", photos, output)
        assert job.returncode == 2, job.stderr
        assert why in job.stderr and job.stdout == ""
    assert recorded(env) == []


def test_unwritable_existing_output_folder_is_refused(env, photos, tmp_path):
    if os.geteuid() == 0:  # root writes through permission bits; /proc above stands in
        read_only = Path("/proc/sys")
    else:
        read_only = tmp_path / "read-only"
        read_only.mkdir()
        read_only.chmod(0o500)
    job = run(env, "remove-dir", photos, read_only)
    assert job.returncode == 2, job.stderr
    assert f"cannot use output folder {read_only}" in job.stderr
    assert recorded(env) == []


@pytest.mark.skipif(
    importlib.util.find_spec("openvino") is not None, reason="openvino is installed here"
)
def test_backend_missing_here_is_refused_in_embedded_mode(env, photos, checkpoint, tmp_path):
    job = run(
        env, "remove-dir", photos, tmp_path / "out", "--checkpoint", checkpoint,
        "--backend", "openvino",
    )  # fmt: skip
    assert job.returncode == 2, job.stderr
    assert "pip install 'unetbg[openvino]'" in job.stderr and job.stdout == ""
    assert recorded(env) == []
