"""What a user of the job commands relies on, without a broker: progress, job id
prefixes, exit statuses per command (broker mode: ``test_cli_cluster.py``).
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from unetbg import jobs
from unetbg.cli import main


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_progress_after_cancel_counts_processed_images(embedded_env, photos, tmp_path, checkpoint):
    from unetbg.tasks.remove import remove_chunk

    job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint), chunk_size=2)
    first = [i.id for i in jobs.list_items(job_id) if i.chunk == 0]
    remove_chunk.apply(args=[job_id, first])  # two images processed, three never started
    view = jobs.cancel_job(job_id)
    assert view.state == "cancelled" and view.items == {"succeeded": 2, "cancelled": 3}
    assert (view.progress_done, view.progress_total) == (2, 5)
    status = run("status", job_id)
    assert status.exit_code == 1
    assert "2/5 images" in status.stdout, status.stdout
    assert json.loads(run("status", job_id, "--json").stdout)["progress_done"] == 2


def test_job_id_prefixes(embedded_env):
    from unetbg.db.models import Job

    with jobs.db_session() as session:
        for job_id in ("f992f1a6bb9e", "a1b2c3d4e5f6", "a1b9c3d4e5f6"):
            session.add(Job(id=job_id, kind="evaluate", state="succeeded", progress_total=1))
    assert json.loads(run("status", "f9", "--json").stdout)["id"] == "f992f1a6bb9e"
    assert run("status", "f9").exit_code == 0
    assert jobs.get_job("a1b2").id == "a1b2c3d4e5f6"

    ambiguous = run("status", "a1")
    assert ambiguous.exit_code == 2
    assert "'a1' is ambiguous: it matches a1b2c3d4e5f6, a1b9c3d4e5f6" in ambiguous.stderr
    short = run("cancel", "f")
    assert short.exit_code == 2 and "'f' is too short: give at least 2" in short.stderr
    unknown = run("status", "0000")
    assert unknown.exit_code == 2 and "no job '0000'" in unknown.stderr
    # Characters LIKE treats specially match nothing, literally.
    assert "no job 'a_'" in run("status", "a_").stderr
    assert "no job 'a%'" in run("status", "a%").stderr


NO_GPU = not __import__("torch").cuda.is_available()


def _usage_errors(tmp, photos, checkpoint, coco):
    """(command line, words of its message): one usage error per command, exit status 2."""
    junk = tmp / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    photo = next(photos.glob("*.jpg"))
    smoke = ("--preset", "smoke", "--coco-root", coco)
    cases = [
        (("remove", tmp / "missing.jpg", "-o", tmp / "o", "--checkpoint", checkpoint), "no such file"),
        (("remove", photo, "-o", tmp / "o", "--checkpoint", junk), "junk.pth"),
        (("remove-dir", tmp / "missing", tmp / "o", "--checkpoint", checkpoint), "does not exist"),
        (("remove-dir", photos, tmp / "o", "--checkpoint", junk), "refusing checkpoint"),
        (("evaluate", junk, "--coco-root", coco, "--limit", 1), "refusing checkpoint"),
        (("evaluate", checkpoint, "--coco-root", tmp / "missing"), "does not exist"),
        (("train", *smoke, "--epochs", 0, "--output-dir", tmp / "run"), "epochs must be >= 1"),
        (("train", "--preset", "smoke", "--coco-root", photos, "--output-dir", tmp / "run"), "--coco-root"),
        (("submit-train", *smoke, "--epochs", 0), "epochs must be >= 1"),
        (("submit-evaluate", junk, "--coco-root", coco), "refusing checkpoint"),
        (("status", "nosuchjob"), "no job"),
        (("cancel", "nosuchjob"), "no job"),
        (("retry", "nosuchjob"), "no job"),
        (("wait", "nosuchjob"), "no job"),
        (("jobs", "--state", "bogus"), "bogus"),
        (("checkpoints", "--job", "nosuchjob"), "no job"),
        (("runs", "prune", "--keep", -1), "--keep"),
        (("worker",), "UNETBG_BROKER_URL"),
        (("flower",), "UNETBG_BROKER_URL"),
        (("db", "bogus"), "No such command"),
        (("config", "--bogus"), "No such option"),
        (("web", "--port", 0), "--port"),
        (("serve", "--host", "0.0.0.0"), "without an API key"),
        (("coco", "quick", "--split", "test"), "--split"),
        (("masks", "check"), "Missing argument"),
    ]  # fmt: skip
    if NO_GPU:  # a device this machine lacks, where this process would use it
        cases += [
            (("remove", photo, "-o", tmp / "o", "--checkpoint", checkpoint, "--device", "cuda"), "no CUDA GPU"),
            (("remove-dir", photos, tmp / "o", "--checkpoint", checkpoint, "--device", "cuda"), "no CUDA GPU"),
            (("evaluate", checkpoint, "--coco-root", coco, "--device", "cuda"), "no CUDA GPU"),
            (("submit-evaluate", checkpoint, "--coco-root", coco, "--device", "cuda"), "no CUDA GPU"),
            (("train", *smoke, "--device", "cuda", "--output-dir", tmp / "run"), "no CUDA GPU"),
        ]  # fmt: skip
    return cases


def test_every_command_exits_2_on_a_usage_error_and_starts_nothing(
    embedded_env, photos, tmp_path, checkpoint, coco_mini
):
    from unetbg.cli import COMMANDS

    cases = _usage_errors(tmp_path, photos, checkpoint, coco_mini)
    assert {args[0] for args, _ in cases} == set(COMMANDS)  # every command has its case
    for args, words in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert words in result.output, (args, result.output)
        assert "Traceback" not in result.output and "model on" not in result.output, args
    assert not (tmp_path / "o").exists() and not (tmp_path / "run").exists()
    assert jobs.list_jobs() == []  # nothing was recorded
    assert run("jobs").exit_code == 0 and run("checkpoints").exit_code == 0


def test_outcomes_exit_0_or_1(embedded_env, photos, tmp_path, checkpoint):
    good = run("remove-dir", photos, tmp_path / "out", "--checkpoint", checkpoint)
    assert good.exit_code == 0, good.output
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    partial = run("remove-dir", photos, tmp_path / "out", "--checkpoint", checkpoint)
    assert partial.exit_code == 1, partial.output
    job_id = partial.stdout.splitlines()[0]
    assert run("status", job_id).exit_code == 1  # failed: its one image failed
    assert run("cancel", job_id).exit_code == 0  # nothing to cancel is not an error
    bad = run("remove", photos / "broken.jpg", "-o", tmp_path / "one", "--checkpoint", checkpoint)
    assert bad.exit_code == 1 and "broken.jpg" in bad.stderr


def test_retry_redoes_failed_images(embedded_env, photos, tmp_path, checkpoint):
    import shutil

    (photos / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    first = run("remove-dir", photos, tmp_path / "out", "--checkpoint", checkpoint)
    assert first.exit_code == 1, first.output
    job_id = first.stdout.splitlines()[0]
    assert jobs.get_job(job_id).state == "partial"
    shutil.copyfile(next(photos.glob("*.jpg")), photos / "broken.jpg")  # fixed

    retried = run("retry", job_id[:5], "--json")
    assert retried.exit_code == 0, retried.output
    job = json.loads(retried.stdout)
    assert job["id"] == job_id and job["state"] == "succeeded", job
    assert job["items"] == {"succeeded": 6} and (tmp_path / "out" / "broken.png").is_file()
    again = run("retry", job_id)
    assert again.exit_code == 2 and "succeeded: nothing to retry" in again.stderr


def test_unclaimed_images_are_flagged_only_while_the_job_does_not_move(
    embedded_env, photos, tmp_path, checkpoint
):
    from datetime import timedelta

    from sqlalchemy import update

    from unetbg.db.models import Job, JobItem, utcnow
    from unetbg.settings import get_settings

    job_id = jobs.create_remove_dir_job(photos, tmp_path / "out", str(checkpoint), chunk_size=2)
    # As a worker would see it: a broker (never called here) and a one-minute window.
    env = {"UNETBG_DATA_DIR": str(embedded_env), "UNETBG_VISIBILITY_TIMEOUT": "60"}
    settings = get_settings(env | {"UNETBG_BROKER_URL": "redis://127.0.0.1:1/0"})
    long_ago = utcnow() - timedelta(minutes=5)
    with jobs.db_session() as session:
        job = session.get(Job, job_id)
        job.state = "running"  # a chunk ran long ago; the other messages are lost
        job.created_at = job.heartbeat_at = long_ago
        session.execute(update(JobItem).values(updated_at=long_ago))
    (hint,) = jobs.waiting_hints(jobs.get_job(job_id), settings)
    assert hint.startswith(f"5 image(s) of job {job_id} have waited unclaimed")
    assert f"`unetbg retry {job_id}`" in hint

    with jobs.db_session() as session:  # one image just finished: the job moves
        item = session.query(JobItem).filter_by(job_id=job_id).first()
        item.state, item.updated_at = "succeeded", utcnow()
    assert jobs.waiting_hints(jobs.get_job(job_id), settings) == []
    assert jobs.waiting_hints(jobs.get_job(job_id)) == []  # embedded: never
    with jobs.db_session() as session:  # a worker's heartbeat: the items are not even read
        item.updated_at = long_ago
        session.merge(item)
        session.get(Job, job_id).heartbeat_at = utcnow()
    assert jobs.waiting_hints(jobs.get_job(job_id), settings) == []
