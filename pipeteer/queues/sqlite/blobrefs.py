"""The blob keys a SQLite file still references, for `pipeteer blobs gc` (see `pipeteer.runtime.blobs`).

Every table with a `value` column (queues, the workflow's output, dead letters) is read in one read
transaction, on a connection of its own: one snapshot of the file, so an item moving from one table
to the next is seen in exactly one of them. Values are scanned as bytes, whatever their schema.
"""

from __future__ import annotations

import sqlite3

from pipeteer.codec.claimcheck import keys_in


def referenced_keys(path: str) -> set[str]:
    """Every blob key referenced by any table of the SQLite file at `path`, read in one transaction."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    found: set[str] = set()
    try:
        conn.execute("BEGIN")  # the snapshot starts at the first read and holds to COMMIT
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}
            if "value" not in columns:
                continue
            for (value,) in conn.execute(f'SELECT value FROM "{table}"'):
                if isinstance(value, bytes):
                    found |= keys_in(value)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return found
