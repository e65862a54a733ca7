"""Task locks of human stages: which reviewer works on which task, shared by every process serving it.

A review console hands a task to one reviewer at a time: opening it takes a lock until a
deadline (renewed while the page stays open), deciding it turns the lock into a *decided* one
that lasts the decision's undo window, and completing it drops the lock. The locks live where
every process serving the stage sees them: in the queues' SQLite file (`SqliteLocks`), or in
this process (`MemoryLocks`: `memory://`, and Kafka, where the instance owning a task's
partition is the only one that serves it). `Backend.locks()` gives the backend's.

Every method takes the wall clock (`now`) from its caller rather than reading it, so that a
console and its tests decide expiry on one clock. A lock whose `until` is not after `now` is
expired: it holds nothing back and is removed in passing.

>>> locks = MemoryLocks()
>>> locks.take("validation", "photo-09", "alice", until=160.0, now=100.0).reviewer
'alice'
>>> locks.take("validation", "photo-09", "bob", until=170.0, now=110.0)  # doctest: +ELLIPSIS
Traceback (most recent call last):
pipeteer.errors.TaskLocked: task 'photo-09' of validation is being worked on by alice (locked until ...)
>>> locks.take("validation", "photo-09", "bob", until=230.0, now=170.0).reviewer  # alice's ran out
'bob'
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from pipeteer.errors import TaskLocked
from pipeteer.queues.sqlite import SqliteStore, transaction


@dataclass(frozen=True)
class Lock:
    """`reviewer` holds task `id` of `stage` until `until` (wall clock, `time.time()`); `decided`: their
    decision on it is waiting out its undo window (and is applied when the lock ends)."""

    stage: str
    id: str
    reviewer: str
    until: float
    decided: bool


class Locks(ABC):
    """Who works on which task of a human stage; every method takes `now` (wall clock seconds)."""

    @abstractmethod
    def take(self, stage: str, id: str, reviewer: str, until: float, now: float, *, decided: bool = False,
             exclusive: bool = True) -> Lock:
        """Lock `id` for `reviewer` until `until` (renewing/replacing their own lock on it). Raises `TaskLocked`
        if another reviewer holds an unexpired lock on it. `exclusive`: also release `reviewer`'s other
        undecided locks in this stage (a reviewer works one task at a time). Atomic across processes."""

    @abstractmethod
    def get(self, stage: str, id: str, now: float) -> Lock | None:
        """The unexpired lock on `id`, or None."""

    @abstractmethod
    def of(self, stage: str, ids: Sequence[str], now: float) -> dict[str, Lock]:
        """The unexpired locks among `ids` (a page of a listing), by id."""

    @abstractmethod
    def release(self, stage: str, id: str, reviewer: str) -> bool:
        """Drop `reviewer`'s own lock on `id` (decided or not); whether they had one (expired or not)."""

    @abstractmethod
    def drop(self, stage: str, id: str) -> None:
        """Drop the lock on `id`, whoever held it (the task was completed)."""

    @abstractmethod
    def release_all(self, reviewer: str) -> int:
        """Drop every undecided lock of `reviewer`, in every stage (they logged out); how many there were.
        Their decided locks stay: those decisions are still applied after their undo window."""

    @abstractmethod
    def count(self, stage: str, now: float) -> int:
        """How many unexpired locks the stage has (decided ones included)."""

    @abstractmethod
    def held_by(self, stage: str, reviewer: str, now: float) -> list[Lock]:
        """The unexpired locks of `reviewer` in `stage`, by id."""


def _refuse(current: Lock | None, reviewer: str, now: float) -> None:
    """Raise `TaskLocked` when `current` is another reviewer's unexpired lock."""
    if current is not None and current.reviewer != reviewer and current.until > now:
        raise TaskLocked(current.stage, current.id, current.reviewer, current.until, current.decided)


PURGE_SECONDS = 60.0
"""At most this often (by the callers' clock), taking a lock also removes the expired ones."""


class MemoryLocks(Locks):
    """The locks of one process, in a dict guarded by a lock (console requests may run in threads).

    A stage has as many locks as reviewers at work (and decisions in their undo window), so the
    questions about one reviewer look through the stage's locks rather than keep an index.
    """

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], Lock] = {}
        self._mutex = threading.Lock()
        self._purged = float("-inf")

    def take(self, stage: str, id: str, reviewer: str, until: float, now: float, *, decided: bool = False,
             exclusive: bool = True) -> Lock:
        lock = Lock(stage, id, reviewer, until, decided)
        with self._mutex:
            _refuse(self._locks.get((stage, id)), reviewer, now)
            if now - self._purged >= PURGE_SECONDS:
                self._purged = now
                for key in [key for key, held in self._locks.items() if held.until <= now]:
                    del self._locks[key]
            if exclusive:
                for key in [key for key, held in self._locks.items()
                            if key[0] == stage and held.reviewer == reviewer and not held.decided and key[1] != id]:
                    del self._locks[key]
            self._locks[stage, id] = lock
        return lock

    def get(self, stage: str, id: str, now: float) -> Lock | None:
        with self._mutex:
            lock = self._locks.get((stage, id))
        return lock if lock is not None and lock.until > now else None

    def of(self, stage: str, ids: Sequence[str], now: float) -> dict[str, Lock]:
        with self._mutex:
            found = [self._locks.get((stage, id)) for id in ids]
        return {lock.id: lock for lock in found if lock is not None and lock.until > now}

    def release(self, stage: str, id: str, reviewer: str) -> bool:
        with self._mutex:
            lock = self._locks.get((stage, id))
            if lock is None or lock.reviewer != reviewer:
                return False
            del self._locks[stage, id]
            return True

    def drop(self, stage: str, id: str) -> None:
        with self._mutex:
            self._locks.pop((stage, id), None)

    def release_all(self, reviewer: str) -> int:
        with self._mutex:
            mine = [key for key, lock in self._locks.items() if lock.reviewer == reviewer and not lock.decided]
            for key in mine:
                del self._locks[key]
        return len(mine)

    def count(self, stage: str, now: float) -> int:
        with self._mutex:
            return sum(1 for (s, _), lock in self._locks.items() if s == stage and lock.until > now)

    def held_by(self, stage: str, reviewer: str, now: float) -> list[Lock]:
        with self._mutex:
            mine = [lock for (s, _), lock in self._locks.items()
                    if s == stage and lock.reviewer == reviewer and lock.until > now]
        return sorted(mine, key=lambda lock: lock.id)


LOCKS_TABLE = "_pipeteer_locks"
"""The table of `SqliteLocks` (tables named `_pipeteer_…` are not queues)."""

_CHUNK = 500
"""Ids per `IN (…)` of `SqliteLocks.of` (SQLite allows 999 parameters in older builds)."""


class SqliteLocks(Locks):
    """The locks in the queues' SQLite file, seen by every process using it.

    `take` is one write transaction (`BEGIN IMMEDIATE`: SQLite runs one writer at a time) that reads
    the task's row and then writes its own, so of two processes racing for a task exactly one wins and
    the other raises `TaskLocked`; every read is a single SELECT. A full disk fails a write with
    `StorageFull` naming the file, as queues do.

    >>> import os, tempfile
    >>> locks = SqliteLocks(os.path.join(tempfile.mkdtemp(), "q.db"))
    >>> locks.take("validation", "photo-09", "alice", until=160.0, now=100.0).until
    160.0
    >>> locks.get("validation", "photo-09", now=170.0) is None  # expired
    True
    """

    def __init__(self, path: str) -> None:
        self.store = SqliteStore.at(path)
        self._purged = float("-inf")

    def _conn(self) -> sqlite3.Connection:
        self.store.ensure_schema("task locks", (
            f"CREATE TABLE IF NOT EXISTS {LOCKS_TABLE} (stage TEXT NOT NULL, id TEXT NOT NULL, "
            "reviewer TEXT NOT NULL, until REAL NOT NULL, decided INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (stage, id))",
            f"CREATE INDEX IF NOT EXISTS {LOCKS_TABLE}_reviewer ON {LOCKS_TABLE} (stage, reviewer)",
        ))
        return self.store.conn()

    def take(self, stage: str, id: str, reviewer: str, until: float, now: float, *, decided: bool = False,
             exclusive: bool = True) -> Lock:
        conn = self._conn()
        purge = now - self._purged >= PURGE_SECONDS
        with self.store.writing(f"locking task {id!r} of stage {stage!r} for {reviewer}"), transaction(conn):
            row = conn.execute(
                f"SELECT reviewer, until, decided FROM {LOCKS_TABLE} WHERE stage = ? AND id = ?", (stage, id)
            ).fetchone()
            _refuse(None if row is None else Lock(stage, id, row[0], row[1], bool(row[2])), reviewer, now)
            if purge:
                conn.execute(f"DELETE FROM {LOCKS_TABLE} WHERE until <= ?", (now,))
            if exclusive:
                conn.execute(
                    f"DELETE FROM {LOCKS_TABLE} WHERE stage = ? AND reviewer = ? AND decided = 0 AND id != ?",
                    (stage, reviewer, id),
                )
            conn.execute(
                f"INSERT INTO {LOCKS_TABLE} (stage, id, reviewer, until, decided) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (stage, id) DO UPDATE SET reviewer = excluded.reviewer, until = excluded.until, "
                "decided = excluded.decided",
                (stage, id, reviewer, until, int(decided)),
            )
        if purge:
            self._purged = now  # (after the commit: a rolled-back purge is tried again next time)
        return Lock(stage, id, reviewer, until, decided)

    def get(self, stage: str, id: str, now: float) -> Lock | None:
        row = self._conn().execute(
            f"SELECT reviewer, until, decided FROM {LOCKS_TABLE} WHERE stage = ? AND id = ? AND until > ?",
            (stage, id, now),
        ).fetchone()
        return None if row is None else Lock(stage, id, row[0], row[1], bool(row[2]))

    def of(self, stage: str, ids: Sequence[str], now: float) -> dict[str, Lock]:
        found: dict[str, Lock] = {}
        unique = list(dict.fromkeys(ids))
        conn = self._conn()
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for id, reviewer, until, decided in conn.execute(
                f"SELECT id, reviewer, until, decided FROM {LOCKS_TABLE} "
                f"WHERE stage = ? AND until > ? AND id IN ({marks})",
                (stage, now, *chunk),
            ):
                found[id] = Lock(stage, id, reviewer, until, bool(decided))
        return found

    def release(self, stage: str, id: str, reviewer: str) -> bool:
        with self.store.writing(f"unlocking task {id!r} of stage {stage!r} for {reviewer}"):
            cur = self._conn().execute(
                f"DELETE FROM {LOCKS_TABLE} WHERE stage = ? AND id = ? AND reviewer = ?", (stage, id, reviewer)
            )
        return cur.rowcount > 0

    def drop(self, stage: str, id: str) -> None:
        with self.store.writing(f"unlocking completed task {id!r} of stage {stage!r}"):
            self._conn().execute(f"DELETE FROM {LOCKS_TABLE} WHERE stage = ? AND id = ?", (stage, id))

    def release_all(self, reviewer: str) -> int:
        with self.store.writing(f"unlocking the tasks of {reviewer}"):
            cur = self._conn().execute(
                f"DELETE FROM {LOCKS_TABLE} WHERE reviewer = ? AND decided = 0", (reviewer,)
            )
        return int(cur.rowcount)

    def count(self, stage: str, now: float) -> int:
        sql = f"SELECT COUNT(*) FROM {LOCKS_TABLE} WHERE stage = ? AND until > ?"
        return int(self._conn().execute(sql, (stage, now)).fetchone()[0])

    def held_by(self, stage: str, reviewer: str, now: float) -> list[Lock]:
        rows = self._conn().execute(
            f"SELECT id, until, decided FROM {LOCKS_TABLE} WHERE stage = ? AND reviewer = ? AND until > ? ORDER BY id",
            (stage, reviewer, now),
        ).fetchall()
        return [Lock(stage, id, reviewer, until, bool(decided)) for id, until, decided in rows]
