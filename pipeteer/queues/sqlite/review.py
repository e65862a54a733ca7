"""The review console's stores in the queues' SQLite file: task locks (`SqliteLocks`) and the ledger of
decisions (`SqliteLedger`), seen by every process using the file. The rules are those of
`pipeteer.queues.locks` and `pipeteer.queues.ledger`; this module is their SQLite room."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from pipeteer.queues.ledger import Decided, Ledger
from pipeteer.queues.locks import PURGE_SECONDS, Lock, Locks, _refuse
from pipeteer.queues.sqlite.store import SqliteStore, transaction

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


DECISIONS_TABLE = "_pipeteer_decisions"
"""The table of `SqliteLedger` (tables named `_pipeteer_…` are not queues)."""

RETAIN_SECONDS = 30 * 24 * 3600.0
"""A `SqliteLedger` keeps decisions this long (before the newest one recorded)."""

PRUNE_SECONDS = 3600.0
"""At most this often per process, recording a decision also deletes those past `RETAIN_SECONDS`."""

_COLUMNS = "stage, id, reviewer, decision, at, seconds, reason"


class SqliteLedger(Ledger):
    """The decisions in the queues' SQLite file, recorded by every process that uses it; kept
    `RETAIN_SECONDS` (30 days). A full disk fails `record` with `StorageFull` naming the file.

    >>> import os, tempfile
    >>> ledger = SqliteLedger(os.path.join(tempfile.mkdtemp(), "q.db"))
    >>> ledger.record(Decided("validation", "photo-09", "alice", "approved", at=100.0, seconds=None))
    >>> ledger.between(0.0, 200.0)
    [Decided(stage='validation', id='photo-09', reviewer='alice', decision='approved', at=100.0, seconds=None, reason=None)]
    """

    def __init__(self, path: str) -> None:
        self.store = SqliteStore.at(path)
        self._pruned = float("-inf")  # (monotonic)

    def _conn(self) -> sqlite3.Connection:
        self.store.ensure_schema("ledger of decisions", (
            f"CREATE TABLE IF NOT EXISTS {DECISIONS_TABLE} (seq INTEGER PRIMARY KEY, stage TEXT NOT NULL, "
            "id TEXT NOT NULL, reviewer TEXT NOT NULL, decision TEXT NOT NULL, at REAL NOT NULL, seconds REAL, "
            "reason TEXT)",
            f"CREATE INDEX IF NOT EXISTS {DECISIONS_TABLE}_stage ON {DECISIONS_TABLE} (stage, at)",
            f"CREATE INDEX IF NOT EXISTS {DECISIONS_TABLE}_reviewer ON {DECISIONS_TABLE} (reviewer, at)",
            f"CREATE INDEX IF NOT EXISTS {DECISIONS_TABLE}_at ON {DECISIONS_TABLE} (at)",
        ))
        return self.store.conn()

    def record(self, entry: Decided) -> None:
        conn = self._conn()
        with self.store.writing(f"recording {entry.reviewer}'s decision on task {entry.id!r} of {entry.stage!r}"):
            conn.execute(
                f"INSERT INTO {DECISIONS_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (entry.stage, entry.id, entry.reviewer, entry.decision, entry.at, entry.seconds, entry.reason),
            )
            now = time.monotonic()
            if now - self._pruned >= PRUNE_SECONDS:
                # Relative to the decision just made (its clock, not this process's): a ledger fed
                # with older times (an import, a test) keeps what is recent to them.
                conn.execute(f"DELETE FROM {DECISIONS_TABLE} WHERE at < ?", (entry.at - RETAIN_SECONDS,))
                self._pruned = now

    def between(self, start: float, end: float, stage: str | None = None) -> list[Decided]:
        where, args = ("AND stage = ? ", (stage,)) if stage is not None else ("", ())
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM {DECISIONS_TABLE} WHERE at >= ? AND at < ? {where}ORDER BY at, seq",
            (start, end, *args),
        ).fetchall()
        return [Decided(*row) for row in rows]

    def recent(self, reviewer: str, limit: int = 20, stage: str | None = None) -> list[Decided]:
        where, args = ("AND stage = ? ", (stage,)) if stage is not None else ("", ())
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM {DECISIONS_TABLE} WHERE reviewer = ? {where}ORDER BY at DESC, seq DESC LIMIT ?",
            (reviewer, *args, max(limit, 0)),
        ).fetchall()
        return [Decided(*row) for row in rows]

    def count(self, stage: str, start: float, end: float) -> int:
        sql = f"SELECT COUNT(*) FROM {DECISIONS_TABLE} WHERE stage = ? AND at >= ? AND at < ?"
        return int(self._conn().execute(sql, (stage, start, end)).fetchone()[0])
