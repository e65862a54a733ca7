"""The console's locks, skips and undo window, as rules (no clock, no I/O), on both lock stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeteer.errors import TaskLocked
from pipeteer.queues.locks import Locks, MemoryLocks
from pipeteer.queues.sqlite import SqliteLocks
from pipeteer.runtime.console.desk import Desk, NothingToUndo, candidates


@pytest.fixture(params=["memory", "sqlite"])
def locks(request: pytest.FixtureRequest, tmp_path: Path) -> Locks:
    return MemoryLocks() if request.param == "memory" else SqliteLocks(str(tmp_path / "q.db"))


def holder(desk: Desk, id: str, now: float) -> str | None:
    lock = desk.holder(id, now)
    return None if lock is None else lock.reviewer


def test_a_lock_is_honoured_by_another_desk_on_the_same_store_and_lapses(locks: Locks) -> None:
    one, two = Desk("s", locks, lease_seconds=60), Desk("s", locks, lease_seconds=60)  # two processes
    one.lease("t0", "alice", now=0)
    with pytest.raises(TaskLocked, match="'t0' of s is being worked on by alice") as e:
        two.lease("t0", "bob", now=2)
    assert (e.value.holder, e.value.until) == ("alice", 60)
    assert holder(two, "t0", now=61) is None  # lapsed
    two.lease("t0", "bob", now=61)
    assert holder(one, "t0", now=62) == "bob"


def test_taking_another_task_releases_the_first(locks: Locks) -> None:
    desk = Desk("s", locks)
    desk.lease("t0", "alice", now=0)
    desk.lease("t1", "alice", now=1)
    assert holder(desk, "t0", now=2) is None and holder(desk, "t1", now=2) == "alice"


def test_a_skipped_task_comes_after_every_other_one_until_nothing_else_is_left(locks: Locks) -> None:
    desk = Desk("s", locks)
    desk.lease("t0", "bob", now=0)
    desk.skip("t0", "bob")
    assert holder(desk, "t0", now=1) is None  # released for the others
    listed = [("t0", None), ("t1", None), ("t2", "alice")]
    assert candidates("bob", listed, desk.skips_of("bob")) == ["t1", "t0"]
    # deciding t1 does not bring t0 back to the front (the skip sticks, whatever left the listing)
    desk.decide("t1", "bob", True, "approved", now=2)
    assert candidates("bob", [("t0", None), ("t3", None)], desk.skips_of("bob")) == ["t3", "t0"]
    assert candidates("alice", [("t0", None), ("t3", None)], desk.skips_of("alice")) == ["t0", "t3"]


def test_a_decision_waits_out_its_window_locked_everywhere_and_only_its_reviewer_undoes_it(locks: Locks) -> None:
    desk, other = Desk("s", locks, lease_seconds=60, undo_seconds=5), Desk("s", locks)
    desk.lease("t0", "alice", now=0)
    d = desk.decide("t0", "alice", True, "approved", now=3, reason=None, comment="fine")
    assert (d.due, d.seconds, d.comment) == (8, 3, "fine")
    lock = other.holder("t0", now=4)
    assert lock is not None and lock.decided and lock.reviewer == "alice"
    with pytest.raises(TaskLocked, match="was decided by alice"):
        other.lease("t0", "bob", now=4)
    with pytest.raises(NothingToUndo):
        desk.undo("t0", "bob", now=4)
    desk.lease("t1", "alice", now=4)  # the next task
    desk.undo("t0", "alice", now=5)
    assert holder(desk, "t0", now=6) == "alice"
    assert holder(desk, "t1", now=6) is None  # undo gives the decided task back and frees the one opened since
    desk.decide("t0", "alice", False, "rejected", now=6)
    assert desk.due(now=10) == [] and [x.label for x in desk.due(now=11)] == ["rejected"]
    desk.done("t0")
    assert other.holder("t0", now=12) is None


def test_logout_forgets_the_reviewers_skips(locks: Locks) -> None:
    desk = Desk("s", locks)
    desk.skip("t0", "bob")
    desk.logged_out("bob")
    assert desk.skips_of("bob") == []
