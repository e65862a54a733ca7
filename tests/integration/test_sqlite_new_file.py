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


def test_threads_opening_a_new_file_together_all_get_a_wal_connection(tmp_path: Path) -> None:
    for round in range(40):
        store = SqliteStore(str(tmp_path / f"new-{round}.db"))
        start = threading.Barrier(8)
        modes: list[str] = []
        errors: list[BaseException] = []

        def open_it() -> None:
            start.wait()
            try:
                modes.append(store.conn().execute("PRAGMA journal_mode").fetchone()[0])
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and modes == ["wal"] * 8
