"""A job's items a page at a time (``jobs.item_page``), on real SQLite and PostgreSQL.

Keyset pages: each page is the items whose id is above the cursor, in id order, so the
pages of a job cover each of its items once, whatever the page size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from unetbg import jobs
from unetbg.db import Job, JobItem, session_scope, upgrade
from unetbg.settings import get_settings

#: person_share of a written output that shows no person, and of one that shows one.
NOBODY, SOMEBODY = 0.0002, 0.4


@pytest.fixture
def settings(db_url: str, tmp_path: Path):
    upgrade(db_url)
    return get_settings({"UNETBG_DATABASE_URL": db_url, "UNETBG_DATA_DIR": str(tmp_path)})


def _record(settings, items: dict[str, list[tuple[str, float | None]]]) -> dict[str, list[int]]:
    """Jobs ``name -> [(state, person_share), ...]``, their items recorded interleaved
    (so one job's ids are not one run); each job's item ids in order."""
    ids: dict[str, list[int]] = {name: [] for name in items}
    with session_scope(settings.database_url) as session:
        for name in items:
            session.add(Job(id=name, kind="remove_dir", progress_total=len(items[name])))
        session.flush()
        rows = []
        for n in range(max(len(v) for v in items.values())):
            for name, wanted in items.items():
                if n < len(wanted):
                    state, share = wanted[n]
                    row = JobItem(
                        job_id=name, source_path=f"/in/{n}.jpg", state=state, person_share=share
                    )
                    session.add(row)
                    rows.append((name, row))
        session.flush()
        for name, row in rows:
            ids[name].append(row.id)
    return {name: sorted(found) for name, found in ids.items()}


def _read_all(settings, job_id: str, state: str, limit: int) -> list[jobs.ItemPage]:
    return list(jobs.item_pages(job_id, state, settings, limit=limit))


def test_pages_cover_every_item_once_in_id_order(settings):
    ids = _record(
        settings, {"big": [("succeeded", SOMEBODY)] * 25, "other": [("failed", None)] * 7}
    )

    pages = _read_all(settings, "big", "all", limit=10)
    assert [len(p.items) for p in pages] == [10, 10, 5]
    listed = [i.id for p in pages for i in p.items]
    assert listed == ids["big"]  # each once, in id order, none of the other job's
    # Each cursor is the last id of its page; the last page says there is no next one.
    assert [p.next_cursor for p in pages] == [listed[9], listed[19], None]
    assert pages[0].items[0].source_path == "/in/0.jpg"

    # A job of exactly two pages ends on the second, not on an empty third.
    exact = _read_all(settings, "big", "all", limit=5)
    assert [len(p.items) for p in exact] == [5] * 5 and exact[-1].next_cursor is None
    whole = jobs.item_page(jobs.ItemPageRequest("big", limit=25), settings)
    assert [i.id for i in whole.items] == ids["big"] and whole.next_cursor is None

    # A cursor past the end (or given by another job) answers an empty last page.
    past = jobs.item_page(jobs.ItemPageRequest("big", cursor=ids["big"][-1]), settings)
    assert past.items == [] and past.next_cursor is None
    assert past.to_dict() == {"items": [], "next_cursor": None}


def test_the_state_filter_pages_only_the_items_it_names(settings):
    wanted = []
    for n in range(30):
        if n % 4 == 0:
            wanted.append(("failed", None))
        elif n % 5 == 0:
            wanted.append(("succeeded", NOBODY))
        elif n % 7 == 0:
            wanted.append(("skipped", None))
        else:
            wanted.append(("succeeded", SOMEBODY))
    ids = _record(settings, {"job": wanted, "neighbour": [("failed", None)] * 10})
    by_state = dict(zip(ids["job"], wanted, strict=True))

    failed = _read_all(settings, "job", "failed", limit=3)
    assert [i.id for p in failed for i in p.items] == [
        i for i in ids["job"] if by_state[i][0] == "failed"
    ]
    assert {i.state for p in failed for i in p.items} == {"failed"}
    assert [len(p.items) for p in failed] == [3, 3, 2]

    nobody = _read_all(settings, "job", "no-person", limit=2)
    listed = [i for p in nobody for i in p.items]
    assert [i.id for i in listed] == [i for i in ids["job"] if by_state[i][1] == NOBODY]
    assert all(i.no_person and i.state == "succeeded" for i in listed)

    everything = [i for p in _read_all(settings, "job", "all", limit=7) for i in p.items]
    assert [i.id for i in everything] == ids["job"]
    assert [i.no_person for i in everything] == [s == NOBODY for _, s in wanted]


def test_the_pages_match_the_whole_list_of_the_job_document(settings):
    _record(settings, {"job": [("succeeded", SOMEBODY), ("failed", None)] * 6})
    for state in jobs.ITEM_CHOICES:
        paged = [i for p in _read_all(settings, "job", state, limit=4) for i in p.items]
        assert paged == jobs.chosen_items("job", state, settings)


@pytest.mark.parametrize(
    ("asked", "says"),
    [
        (
            {"state": "pending"},
            "unknown item state 'pending'; choose one of failed, no-person, all",
        ),
        ({"limit": 0}, "limit must be from 1 to 1000, got 0"),
        ({"limit": 1001}, "limit must be from 1 to 1000, got 1001"),
        ({"limit": "10"}, "limit must be a whole number, got '10'"),
        ({"cursor": -1}, "cursor must be the next_cursor of the page before (an item id), got -1"),
        ({"cursor": "abc"}, "cursor must be the next_cursor of the page before"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(asked, says):
    with pytest.raises(jobs.JobError) as refused:
        jobs.ItemPageRequest("job", **asked)
    assert says in str(refused.value)


def test_an_unknown_job_has_no_pages(settings):
    _record(settings, {"job": [("succeeded", SOMEBODY)]})
    with pytest.raises(jobs.JobNotFound, match="no job 'nojob'"):
        jobs.item_page(jobs.ItemPageRequest("nojob"), settings)
    # A unique prefix names the job, as everywhere else.
    assert len(jobs.item_page(jobs.ItemPageRequest("jo"), settings).items) == 1
