"""The readiness rule alone: events and stats in, ready files out (no clock, no disk)."""

from __future__ import annotations

from pathlib import Path

from unetbg.watch.readiness import STALLED_OPEN_S, Readiness

A = Path("/in/a.jpg")


def looks(*signatures):
    """A stat that answers ``signatures`` in turn (``None``: the file is gone)."""
    answers = iter(signatures)
    return lambda path: next(answers)


def test_closed_after_write_is_ready_once_its_size_holds():
    rule = Readiness(settle_s=60)
    rule.changed(A, 0.0)
    rule.opened(A, 0.0)
    assert rule.due(0.1, looks((10, 1))) == []  # first look
    rule.closed(A, 0.2, wrote=True)
    assert rule.due(0.3, looks((20, 2))) == []  # grew after the last look
    assert rule.due(0.4, looks((20, 2))) == [(A, (20, 2))]
    assert len(rule) == 0


def test_an_open_file_waits_past_the_settle_period():
    rule = Readiness(settle_s=1)
    rule.opened(A, 0.0)  # opened before its first change (a rewrite)
    rule.changed(A, 0.0)
    assert rule.due(0.1, looks((10, 1))) == []
    assert rule.due(5.0, looks((10, 1))) == []  # writer paused, file still open
    assert rule.due(STALLED_OPEN_S + 1, looks((10, 1))) == [(A, (10, 1))]


def test_without_close_events_the_settle_period_decides():
    rule = Readiness(settle_s=1)
    rule.changed(A, 0.0)  # moved in: no open, no close
    assert rule.due(0.1, looks((10, 1))) == []
    assert rule.due(0.9, looks((10, 1))) == []
    assert rule.due(1.2, looks((10, 1))) == [(A, (10, 1))]


def test_a_read_does_not_make_a_file_ready_and_a_deleted_one_is_dropped():
    rule = Readiness(settle_s=1)
    rule.changed(A, 0.0)
    rule.opened(A, 0.0)
    rule.closed(A, 0.1, wrote=False)  # a reader, not the writer
    assert rule.due(0.2, looks((10, 1))) == []
    assert rule.due(0.3, looks((10, 1))) == []
    assert rule.due(0.4, looks(None)) == [] and len(rule) == 0
