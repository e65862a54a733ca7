"""Task locks (`pipeteer.queues.locks`), the same checks on both implementations, and a real race of two
processes for the same tasks on one SQLite file (each task is won by exactly one)."""

from __future__ import annotations

import multiprocessing
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeteer.errors import TaskLocked
from pipeteer.queues.backends import backend_from_url
from pipeteer.queues.locks import Lock, Locks, MemoryLocks
from pipeteer.queues.sqlite import SqliteLocks, SqliteStore

S = "validation"


@pytest.fixture(params=["memory", "sqlite"])
def locks(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Locks]:
    if request.param == "memory":
        yield MemoryLocks()
    else:
        yield SqliteLocks(str(tmp_path / "queues.db"))
        SqliteStore.at(tmp_path / "queues.db").close()


def test_take_renew_and_expiry(locks: Locks) -> None:
    lock = locks.take(S, "a", "alice", until=160.0, now=100.0)
    assert lock == Lock(S, "a", "alice", 160.0, False)
    assert locks.get(S, "a", now=159.0) == lock
    with pytest.raises(TaskLocked) as e:
        locks.take(S, "a", "bob", until=200.0, now=150.0)
    assert (e.value.stage, e.value.id, e.value.holder, e.value.until, e.value.decided) == (S, "a", "alice", 160.0, False)
    assert "task 'a' of validation is being worked on by alice (locked until" in str(e.value)
    assert locks.take(S, "a", "alice", until=220.0, now=150.0).until == 220.0  # renewed by its holder
    assert locks.get(S, "a", now=219.0) is not None and locks.get(S, "a", now=220.0) is None  # until is exclusive
    assert locks.take(S, "a", "bob", until=300.0, now=220.0).reviewer == "bob"  # alice's ran out
    assert locks.get("other stage", "a", now=221.0) is None  # stages do not share locks
    locks.take("other stage", "a", "carol", until=300.0, now=221.0)  # (nor block each other)


def test_exclusive_releases_the_reviewers_other_undecided_locks_of_the_stage(locks: Locks) -> None:
    locks.take(S, "a", "alice", until=200.0, now=100.0)
    locks.take(S, "b", "alice", until=200.0, now=100.0, decided=True)  # waiting out its undo window
    locks.take("review", "c", "alice", until=200.0, now=100.0)  # another stage
    locks.take(S, "d", "alice", until=200.0, now=101.0)
    assert [lock.id for lock in locks.held_by(S, "alice", now=102.0)] == ["b", "d"]
    assert locks.get("review", "c", now=102.0) is not None
    locks.take(S, "e", "alice", until=200.0, now=103.0, exclusive=False)
    assert [lock.id for lock in locks.held_by(S, "alice", now=104.0)] == ["b", "d", "e"]


def test_decided_locks_hold_others_back_and_say_so(locks: Locks) -> None:
    locks.take(S, "a", "alice", until=200.0, now=100.0)
    decided = locks.take(S, "a", "alice", until=130.0, now=110.0, decided=True)
    assert decided.decided and locks.get(S, "a", now=111.0) == decided
    with pytest.raises(TaskLocked, match=r"task 'a' of validation was decided by alice \(applied after its undo"):
        locks.take(S, "a", "bob", until=300.0, now=120.0)
    assert locks.take(S, "a", "alice", until=300.0, now=120.0).decided is False  # undone: theirs again
    assert locks.release_all("alice") == 1
    locks.take(S, "b", "alice", until=300.0, now=120.0, decided=True)
    assert locks.release_all("alice") == 0  # decided ones stay: they are applied after the window
    assert locks.get(S, "b", now=121.0) is not None


def test_release_drop_release_all_count_of(locks: Locks) -> None:
    for i, reviewer in enumerate(["alice", "bob", "carol"]):
        locks.take(S, f"t{i}", reviewer, until=200.0 + i, now=100.0)
    locks.take("review", "t9", "alice", until=200.0, now=100.0)
    assert locks.count(S, now=150.0) == 3 and locks.count(S, now=201.5) == 1 and locks.count("nope", now=0.0) == 0
    of = locks.of(S, ["t0", "t2", "t5", "t0"], now=150.0)
    assert {id: lock.reviewer for id, lock in of.items()} == {"t0": "alice", "t2": "carol"}
    assert locks.of(S, [], now=150.0) == {} and set(locks.of(S, ["t0", "t1", "t2"], now=201.5)) == {"t2"}
    assert not locks.release(S, "t0", "bob") and locks.get(S, "t0", now=150.0) is not None  # not bob's
    assert locks.release(S, "t0", "alice") and locks.get(S, "t0", now=150.0) is None
    assert not locks.release(S, "t0", "alice")
    locks.drop(S, "t1")
    locks.drop(S, "never locked")
    assert locks.get(S, "t1", now=150.0) is None
    assert locks.release_all("alice") == 1 and locks.get("review", "t9", now=150.0) is None
    assert locks.count(S, now=150.0) == 1 and locks.held_by(S, "carol", now=150.0) == [Lock(S, "t2", "carol", 202.0, False)]


def test_many_ids_are_asked_in_one_call(locks: Locks) -> None:
    for i in range(0, 1200, 7):
        locks.take(S, f"t{i}", f"r{i}", until=200.0, now=100.0)
    found = locks.of(S, [f"t{i}" for i in range(1200)], now=150.0)
    assert sorted(found) == sorted(f"t{i}" for i in range(0, 1200, 7))


def test_task_locked_names_what_and_pickles() -> None:
    e = TaskLocked(S, "p" * 300, "alice", 0.0, False)
    assert "p" * 99 + "…" in str(e) and "p" * 100 not in str(e) and "00:00:00 UTC" in str(e)
    back = pickle.loads(pickle.dumps(e))
    assert (back.stage, back.id, back.holder, back.decided, str(back)) == (S, "p" * 300, "alice", False, str(e))


def test_each_backend_gives_one_locks_object(tmp_path: Path) -> None:
    memory = backend_from_url("memory://", workflow_name="wf", env={})
    assert isinstance(memory.locks(), MemoryLocks) and memory.locks() is memory.locks()
    sqlite = backend_from_url(f"sqlite:///{tmp_path / 'q.db'}", workflow_name="wf", env={})
    assert isinstance(sqlite.locks(), SqliteLocks) and sqlite.locks() is sqlite.locks()
    sqlite.locks().take(S, "a", "alice", until=200.0, now=100.0)
    other = backend_from_url(f"sqlite:///{tmp_path / 'q.db'}", workflow_name="wf", env={})
    assert other.locks().get(S, "a", now=150.0) is not None  # the file's, not the object's
    sqlite.close()


TASKS = 200


def _race(path: str, reviewer: str, barrier: Any, results: Any) -> None:
    """One process of the race: take every task (not exclusively: each is kept) for `reviewer`, in an
    order of its own (the two processes meet on many tasks rather than one running ahead of the other)."""
    locks = SqliteLocks(path)
    locks.get(S, "warm-up", now=0.0)  # (the connection and table first: the race is about `take`)
    order = [f"t{i}" for i in range(TASKS)]
    random.Random(reviewer).shuffle(order)
    won = []
    barrier.wait()
    for id in order:
        try:
            locks.take(S, id, reviewer, until=4e9, now=1.0, exclusive=False)
            won.append(id)
        except TaskLocked:
            pass
    results.put((reviewer, won))


def test_two_processes_racing_for_the_same_tasks_never_both_win(tmp_path: Path) -> None:
    path = str(tmp_path / "queues.db")
    SqliteLocks(path).count(S, now=0.0)  # the table made before the race
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(path, reviewer, barrier, results)) for reviewer in ("alice", "bob")]
    for p in procs:
        p.start()
    won = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert not set(won["alice"]) & set(won["bob"])
    assert sorted(won["alice"] + won["bob"]) == sorted(f"t{i}" for i in range(TASKS))
    held = SqliteLocks(path).of(S, [f"t{i}" for i in range(TASKS)], now=2.0)
    assert {id: lock.reviewer for id, lock in held.items()} == {
        **{id: "alice" for id in won["alice"]}, **{id: "bob" for id in won["bob"]}
    }
    SqliteStore.at(path).close()


def test_a_lock_beyond_the_calendar_is_still_said() -> None:
    assert "locked until 1000000000000 s after the epoch" in str(TaskLocked(S, "a", "alice", 1e12, False))
