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
