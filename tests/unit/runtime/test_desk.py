"""The console's leases and undo window, as rules (no clock, no I/O)."""

from __future__ import annotations

import pytest

from pipeteer.runtime.console.desk import Desk, NothingToUndo, TaskTaken

IDS = ["t0", "t1", "t2"]


def test_each_reviewer_gets_a_different_task_and_leases_lapse() -> None:
    desk = Desk(lease_seconds=60, undo_seconds=5)
    a = desk.next_for("alice", IDS, now=0)
    desk.lease(a or "", "alice", now=0)
    b = desk.next_for("bob", IDS, now=1)
    assert (a, b) == ("t0", "t1")
    with pytest.raises(TaskTaken, match="'t0' is being worked on by alice"):
        desk.lease("t0", "bob", now=2)
    assert desk.next_for("alice", IDS, now=3) == "t0"  # her own task is still hers
    assert desk.holder("t0", now=61) is None  # lapsed
    desk.lease("t0", "bob", now=61)
    assert desk.holder("t0", now=62) == "bob"


def test_taking_another_task_releases_the_first() -> None:
    desk = Desk()
    desk.lease("t0", "alice", now=0)
    desk.lease("t1", "alice", now=1)
    assert desk.holder("t0", now=2) is None and desk.holder("t1", now=2) == "alice"
    assert desk.release("t1", "bob") is False and desk.release("t1", "alice") is True


def test_next_after_wraps_around_skipping_taken_ones() -> None:
    desk = Desk()
    desk.lease("t0", "bob", now=0)
    assert desk.next_for("alice", IDS, now=0, after="t2") == "t1"
    assert desk.next_for("alice", IDS, now=0, after="t1") == "t2"
    desk.decide("t2", "carol", True, "approved", now=0)
    assert desk.next_for("alice", IDS, now=0, after="t1") == "t1"


def test_a_decision_waits_out_its_window_and_can_be_undone_by_its_reviewer_only() -> None:
    desk = Desk(undo_seconds=5)
    desk.decide("t0", "alice", True, "approved", now=10)
    with pytest.raises(TaskTaken, match="already completed by alice"):
        desk.decide("t0", "bob", False, "rejected", now=11)
    with pytest.raises(NothingToUndo):
        desk.undo("t0", "bob", now=11)
    assert desk.due(now=14) == []
    desk.undo("t0", "alice", now=12)
    assert desk.holder("t0", now=12) == "alice" and desk.due(now=100) == []
    desk.decide("t0", "alice", False, "rejected", now=20)
    [d] = desk.due(now=25)
    assert (d.id, d.value, d.reviewer) == ("t0", False, "alice")
    with pytest.raises(NothingToUndo):
        desk.undo("t0", "alice", now=26)


def test_version_moves_on_every_visible_change() -> None:
    desk = Desk()
    v = desk.version
    desk.lease("t0", "alice", now=0)
    assert desk.version > v
    v = desk.version
    desk.holder("t0", now=1)
    assert desk.version == v
