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
