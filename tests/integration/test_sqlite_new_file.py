"""A new SQLite file opened by many connections at once: each turns it to WAL, none fails.

Switching a new file's journal to WAL takes an exclusive lock, and SQLite answers "database is
locked" at once (its busy timeout does not apply) to a connection that races another for it: the
console's ledger, written by four threads on a fresh file, lost a thread's decisions that way in
about one run of ten.
"""

from __future__ import annotations

import threading
from pathlib import Path

from pipeteer.queues.sqlite import SqliteStore


def open_together(store: SqliteStore, n: int) -> tuple[list[str], list[BaseException]]:
    """`n` threads ask `store` for their connection at the same moment: each one's journal mode, or error."""
    start = threading.Barrier(n)
    modes: list[str] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            modes.append(store.conn().execute("PRAGMA journal_mode").fetchone()[0])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return modes, errors


def test_threads_opening_a_new_file_together_all_get_a_wal_connection(tmp_path: Path) -> None:
    for round in range(40):
        assert open_together(SqliteStore(str(tmp_path / f"new-{round}.db")), 8) == (["wal"] * 8, [])
