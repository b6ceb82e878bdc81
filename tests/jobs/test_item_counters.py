"""A remove-dir job's counters by state (issue 23, items 2 and 3): after every way its
items move (claims, outcomes, failures, a dead worker's images sent again, retry,
cancel) they equal a recount of its items; outputs that existed are a count, not rows.

The worker's steps are the real ``jobs.claims`` functions called here (a dead worker is
a real process that claimed images and exited); the broker is real Redis with no
worker, so what is sent stays queued.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_bulk_recording import make_folder


def counters_match_a_recount(job_id: str) -> dict[str, int]:
    """The job's counters, asserted equal to a count of its items; returns them."""
    from unetbg.jobs import db_session
    from unetbg.jobs.records import counted, item_tally

    with db_session() as session:
        counts, no_person, _ = counted(session, job_id)
        assert (counts, no_person) == item_tally(session, job_id)
    return counts


def chunk_ids(job_id: str) -> dict[int, list[int]]:
    from unetbg import jobs

    chunks: dict[int, list[int]] = {}
    for item in jobs.list_items(job_id, states=["pending"]):
        chunks.setdefault(item.chunk, []).append(item.id)
    return chunks


CLAIM_AND_DIE = """
import sys
from unetbg.jobs.claims import claim_items
claim = claim_items(sys.argv[1], [int(i) for i in sys.argv[2].split(",")])
print(len(claim.rows))
"""


def test_counters_follow_every_move_of_the_items(submitter, checkpoint, tmp_path):
    from unetbg import jobs
    from unetbg.jobs.claims import claim_items, close_items, record_item

    folder = make_folder(tmp_path / "in", images=12, others=1)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "img001.png").write_bytes(b"done before")  # an output that exists
    job_id = jobs.create_remove_dir_job(folder, out, str(checkpoint), chunk_size=4)
    assert counters_match_a_recount(job_id) == {"pending": 11, "skipped": 1}
    view = jobs.get_job(job_id)
    # The existing output is a count: no row, but the job says it was skipped.
    assert view.items == {"pending": 11, "skipped": 2} and view.progress_total == 11
    assert len(jobs.list_items(job_id)) == 12
    chunks = chunk_ids(job_id)

    # A chunk here: two written (one shows no person), one failed, the rest closed.
    claim = claim_items(job_id, chunks[0])
    assert counters_match_a_recount(job_id)["running"] == 4
    (first, _, _), (second, _, _), (third, _, _) = claim.rows[:3]
    assert record_item(job_id, first, "succeeded", None, 0.1, person_share=0.0)[0]
    assert record_item(job_id, second, "succeeded", None, 0.1, person_share=0.4)[0]
    assert record_item(job_id, third, "failed", "bad photo", 0.1)[0]
    # Written once only: the image is no longer this attempt's.
    assert not record_item(job_id, third, "succeeded", None, 0.1)[0]
    close_items(job_id, chunks[0], "failed", "chunk stopped")
    counts = counters_match_a_recount(job_id)
    assert counts == {"pending": 7, "succeeded": 2, "failed": 2, "skipped": 1}
    assert jobs.get_job(job_id).no_person == 1

    # A worker that claimed the next chunk and died: its images are sent again.
    env = submitter.cli_env()
    ids = ",".join(map(str, chunks[1]))
    died = subprocess.run(
        [sys.executable, "-c", CLAIM_AND_DIE, job_id, ids], env=env, capture_output=True, text=True
    )
    assert died.returncode == 0 and died.stdout.strip() == "4", died.stderr
    assert counters_match_a_recount(job_id)["running"] == 4
    assert jobs.recover_lost_work()
    counts = counters_match_a_recount(job_id)
    assert counts == {"pending": 7, "succeeded": 2, "failed": 2, "skipped": 1}

    # Retry: the failed images are pending again; cancel: every pending one cancelled.
    jobs.retry_job(job_id)
    assert counters_match_a_recount(job_id) == {"pending": 9, "succeeded": 2, "skipped": 1}
    view = jobs.cancel_job(job_id)
    assert counters_match_a_recount(job_id) == {"cancelled": 9, "succeeded": 2, "skipped": 1}
    assert view.state == "cancelled"
    assert view.items == {"cancelled": 9, "succeeded": 2, "skipped": 2}
    assert view.result == {"succeeded": 2, "failed": 0, "skipped": 2, "cancelled": 9}
    assert view.progress_done == 2 and view.no_person == 1


def test_a_rerun_counts_the_outputs_it_skips(submitter, checkpoint, tmp_path):
    from unetbg import jobs

    folder = make_folder(tmp_path / "in", images=4)
    out = tmp_path / "out"
    for name in ("img000.png", "sub/img001.png", "img002.png"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"done before")
    job_id = jobs.create_remove_dir_job(folder, out, str(checkpoint))
    view = jobs.get_job(job_id)
    assert view.items == {"pending": 1, "skipped": 3} and view.progress_total == 1
    assert [Path(i.source_path).name for i in jobs.list_items(job_id)] == ["img003.jpg"]
    (out / "sub" / "img003.png").parent.mkdir(parents=True, exist_ok=True)
    (out / "sub" / "img003.png").write_bytes(b"done")
    again = jobs.get_job(jobs.create_remove_dir_job(folder, out, str(checkpoint)))
    # Nothing to do: final at once, its summary saying how many were skipped.
    assert again.state == "succeeded" and again.items == {"skipped": 4}
    assert again.result["skipped"] == 4 and jobs.list_items(again.id) == []


def test_a_watched_jobs_new_and_changed_files_move_its_counters(submitter, checkpoint, tmp_path):
    """Files added to a watched job, new ones and ones it had (done, failed, no person),
    move its counters as they move its items: settling counts nothing."""
    from PIL import Image

    from unetbg import jobs
    from unetbg.jobs.claims import claim_items, record_item
    from unetbg.jobs.watched import add_watched_files, close_watch

    folder = make_folder(tmp_path / "in", images=4, others=0)
    out = tmp_path / "out"
    job_id = jobs.create_remove_dir_job(folder, out, str(checkpoint), chunk_size=2, watch=True)
    assert counters_match_a_recount(job_id) == {"pending": 4}
    items = jobs.list_items(job_id)
    claim_items(job_id, [i.id for i in items])
    record_item(job_id, items[0].id, "succeeded", None, 0.1, person_share=0.0)  # no person
    record_item(job_id, items[1].id, "succeeded", None, 0.1, person_share=0.5)
    record_item(job_id, items[2].id, "failed", "bad photo", 0.1)
    assert counters_match_a_recount(job_id) == {"succeeded": 2, "failed": 1, "running": 1}

    new = folder / "new.jpg"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(new)
    changed = [Path(items[n].source_path) for n in (0, 2, 3)]  # done, failed, running
    added = add_watched_files(job_id, [new, *changed])
    assert [Path(p) for p in added.busy] == [changed[2]]
    counts = counters_match_a_recount(job_id)
    assert counts == {"pending": 3, "succeeded": 1, "running": 1}
    assert jobs.get_job(job_id).no_person == 0
    close_watch(job_id)
    assert counters_match_a_recount(job_id) == counts
