"""The dead letters of a SQLite queue: a table `<queue>.dead-letters` beside the queue's, in the same file.

An item its stage gave up on leaves the queue's table for this one in one transaction, with its
error; a replay puts the latest letter of each id back in one transaction too. The table is made
when the first letter is written: listing needs no write, so it works on a full disk.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeteer.queues.sqlite.store import transaction

if TYPE_CHECKING:
    from pipeteer.queues.sqlite.store import SqliteStore

Letter = tuple[str, bytes, str, str, str, int, float]
"""A row: id, value, error class, error message, stack trace, attempts, when it failed (wall clock)."""


class DeadLetterTable:
    """The dead letters of the queue whose table is `queue`, in the file of `store`."""

    def __init__(self, store: SqliteStore, queue: str) -> None:
        self.store = store
        self.queue = queue
        self.name = f"{queue}.dead-letters"

    def _ensure(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{self.name}" (seq INTEGER PRIMARY KEY AUTOINCREMENT, '
            "id TEXT NOT NULL, value BLOB NOT NULL, error_class TEXT NOT NULL, error_message TEXT NOT NULL, "
            "stacktrace TEXT NOT NULL, attempts INTEGER NOT NULL, failed_at REAL NOT NULL)"
        )

    def _exists(self, conn: sqlite3.Connection) -> bool:
        """Whether the table exists (reading needs no write: listing works on a full disk)."""
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return conn.execute(sql, (self.name,)).fetchone() is not None

    def set_aside(self, conn: sqlite3.Connection, id: str, error_class: str, message: str, trace: str,
                  attempts: int) -> None:
        """Move the item `id` from the queue to this table, with its error (nothing if it moved on meanwhile)."""
        with self.store.writing(f"setting item {id!r} of queue {self.queue!r} aside as a dead letter"):
            self._ensure(conn)
            with transaction(conn):
                row = conn.execute(f'SELECT value FROM "{self.queue}" WHERE id = ?', (id,)).fetchone()
                if row is not None:  # moved on meanwhile (another process): nothing to dead-letter
                    conn.execute(f'DELETE FROM "{self.queue}" WHERE id = ?', (id,))
                    conn.execute(
                        f'INSERT INTO "{self.name}" (id, value, error_class, error_message, '
                        "stacktrace, attempts, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (id, row[0], error_class, message, trace, attempts, time.time()),
                    )

    def letters(self, conn: sqlite3.Connection) -> list[Letter]:
        """Every letter, oldest first."""
        if not self._exists(conn):
            return []
        rows: list[Letter] = conn.execute(
            "SELECT id, value, error_class, error_message, stacktrace, attempts, failed_at "
            f'FROM "{self.name}" ORDER BY seq'
        ).fetchall()
        return rows

    def replay(self, conn: sqlite3.Connection, ids: Sequence[str] | None) -> list[str]:
        """Put letters back in the queue (all, or the latest of each id given), in one transaction: their ids."""
        if not self._exists(conn):
            return []
        with self.store.writing(f"replaying dead letters into queue {self.queue!r}"):
            with transaction(conn):
                rows = conn.execute(f'SELECT seq, id, value FROM "{self.name}" ORDER BY seq').fetchall()
                latest = {id: value for _, id, value in rows if ids is None or id in ids}
                for id, value in latest.items():
                    conn.execute(
                        f'INSERT INTO "{self.queue}" (id, value, at) VALUES (?, ?, ?) '
                        "ON CONFLICT(id) DO UPDATE SET value = excluded.value",
                        (id, value, time.time()),
                    )
                    conn.execute(f'DELETE FROM "{self.name}" WHERE id = ?', (id,))
        return list(latest)
