"""A SQLite file stays small: space of items that left is given back, the WAL is bounded."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from pipeteer.queues.sqlite import SqliteQueue, SqliteStore
from pipeteer.queues.sqlite.store import WAL_LIMIT


async def test_space_is_given_back_after_items_leave(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    q: SqliteQueue[bytes] = SqliteQueue(bytes, path=db, table="photos")  # no claim check: rows hold the bytes
    for i in range(40):
        await q.push(f"p{i}", os.urandom(256 * 1024))
    q.store.tidy(force=True)
    full = db.stat().st_size
    assert full > 40 * 256 * 1024
    for i in range(40):
        await q.pop(f"p{i}")
    q.store.tidy(force=True)
    assert sqlite3.connect(db).execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert db.stat().st_size < full // 10
    wal = Path(f"{db}-wal")
    await q.push("again", b"x")  # a write after the checkpoint resets the WAL, truncated to its limit
    assert wal.stat().st_size <= WAL_LIMIT
    SqliteStore.at(db).close()
