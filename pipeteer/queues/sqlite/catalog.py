"""The schema catalog of a SQLite file: one table of the database the queues live in.

A process publishes each schema it writes with before the first row of it (`SqliteQueue` does, on its
first write), in its own transaction: any process that reads such a row from the file later finds
the schema in the same file. Readers look a fingerprint up when they meet it (one indexed query).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeteer.codec.catalog import Published, SchemaCatalog
from pipeteer.codec.schema import Schema, fingerprint, full_name

if TYPE_CHECKING:
    from pipeteer.queues.sqlite.store import SqliteStore

TABLE = "_pipeteer_schemas"
"""The table's name: a leading underscore, which `'-'.join(path)` of a workflow's queue never starts with
(stage names are identifiers)."""


class SqliteCatalog(SchemaCatalog):
    """The `_pipeteer_schemas` table of one SQLite file (`SqliteStore`)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.where = f"the schemas table of {store.path}"
        self._made = False

    def _conn(self) -> sqlite3.Connection:
        conn = self.store.conn()
        if not self._made:
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{TABLE}" (fingerprint TEXT PRIMARY KEY, name TEXT NOT NULL, '
                "schema TEXT NOT NULL, at REAL NOT NULL)"
            )
            self._made = True
        return conn

    def publish(self, schemas: Sequence[Schema]) -> None:
        now = time.time()
        rows = [
            (fingerprint(s).hex(), full_name(s) or json.dumps(s), json.dumps(s, sort_keys=True), now) for s in schemas
        ]
        if rows:
            self._conn().executemany(
                f'INSERT INTO "{TABLE}" (fingerprint, name, schema, at) VALUES (?, ?, ?, ?) '
                "ON CONFLICT(fingerprint) DO UPDATE SET at = excluded.at",
                rows,
            )

    def published(self) -> list[Published]:
        rows = self._conn().execute(f'SELECT fingerprint, schema, at FROM "{TABLE}" ORDER BY at').fetchall()
        return [Published(bytes.fromhex(fp), json.loads(text), float(at)) for fp, text, at in rows]

    def lookup(self, fp: bytes) -> Schema | None:
        row = self._conn().execute(f'SELECT schema FROM "{TABLE}" WHERE fingerprint = ?', (fp.hex(),)).fetchone()
        return None if row is None else json.loads(row[0])
