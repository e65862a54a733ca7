"""One SQLite file of queues: its connections, its tables, its transactions, a full disk said, and the
wait for a commit of another process.

The file is in WAL mode, so several processes can share it: readers never block the writer. A
connection is made per process and thread (connections must not cross a fork), and every queue on
one file shares them (`SqliteStore.at`).

A file system that fills up (the file, its WAL, or the blob store beside it) fails the write with
`StorageFull`, naming the file and the space left, and leaves everything as it was: SQLite rolls
the statement or transaction back, and a row is written only after its blobs are whole. A stage
whose output found no room gives its item back to itself, so that it is read again once the
service has waited (`StorageFull` is `Unavailable`: no attempt is counted, no dead letter made).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from pipeteer.codec import catalogs
from pipeteer.codec.blobstore import free_space, room_for
from pipeteer.errors import StorageFull
from pipeteer.queues.notify import Notifier
from pipeteer.queues.sqlite.catalog import SqliteCatalog
from pipeteer.queues.sqlite.claims import Claims

POLL_SECONDS = 0.01
"""The longest a waiting reader goes without noticing a push by *another process* (same-process pushes
wake it at once). It checks the file's `data_version` (cheap: no query) every 1 ms at first, backing
off to this while nothing changes."""
FIRST_LOOK = 0.001

WAL_LIMIT = 32 << 20
"""`journal_size_limit`: after a checkpoint resets the WAL, its file is truncated to this size, so a
long stream does not leave a WAL as large as its largest burst."""

TIDY_SECONDS = 1.0
"""At most this often, after items left a queue, free pages are returned to the file system
(`incremental_vacuum`) and the WAL is checkpointed (PASSIVE: never waits for readers)."""


NEARLY_FULL = 1 << 20
"""An I/O error (or a file SQLite cannot open) on a file system with less than this free is taken
for the disk full: SQLite says SQLITE_FULL when a write finds no space, but SQLITE_IOERR when an
fsync, or growing the WAL's index, does, and Python does not give the errno behind it."""

FULL_FIX = (
    "free space there, or move the database to a larger file system (sqlite:///PATH in --backend or "
    "PIPETEER_BACKEND); nothing was written, and stages waiting for it go on by themselves once there is room"
)
"""What a full database's `StorageFull` says to do."""


def full_database(error: sqlite3.Error, path: str) -> StorageFull | None:
    """`StorageFull` naming the database `path` when SQLite's `error` says its file system is full, else None."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF  # (extended codes keep the primary one in their low byte)
    if primary not in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return None
    free, mount = free_space(path)
    if primary != sqlite3.SQLITE_FULL and (free is None or free >= NEARLY_FULL):
        return None
    return StorageFull(path, doing=f"SQLite: {error}", free=free, mount=mount, fix=FULL_FIX)


class _Connection(sqlite3.Connection):
    """A connection whose statements raise `StorageFull` when the disk is full (see `full_database`),
    wherever they run: a push, a move, and also a read's claim or a schema's publication."""

    path = ""
    """The database file (what `StorageFull` names)."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as e:
            self._raise(e)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as e:
            self._raise(e)

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(script)
        except sqlite3.Error as e:
            self._raise(e)

    def _raise(self, error: sqlite3.Error) -> NoReturn:
        full = full_database(error, self.path)
        if full is None:
            raise error
        raise full from error


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE`, the block, `COMMIT`; rolled back if the block or the commit fails. (A full
    disk can fail the COMMIT itself, and SQLite may then have rolled back already: said, not assumed.)"""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error, StorageFull):
                conn.execute("ROLLBACK")
        raise


WAL_SWITCH_SECONDS = 30.0
"""How long a connection tries to turn a new file to WAL while other connections race to do the same."""


def _wal(conn: sqlite3.Connection) -> None:
    """`PRAGMA journal_mode=WAL`, tried again while the file is locked: switching a new file's journal
    takes an exclusive lock, and SQLite answers "database is locked" at once (no busy wait) when
    another connection holds one, as when several threads or processes open a new file together."""
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class SqliteStore:
    """One SQLite file, with a connection per process and thread (connections must not cross a fork)."""

    _stores: ClassVar[dict[str, SqliteStore]] = {}
    _lock = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self._conns: dict[tuple[int, int], sqlite3.Connection] = {}
        self._notifiers: dict[str, Notifier] = {}
        self._tables: set[tuple[int, str]] = set()
        self._tidied = 0.0
        self._claims: Claims | None = None
        self._catalog: SqliteCatalog | None = None

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> SqliteStore:
        """The store for a file; one per absolute path, so every queue on one file shares its connection."""
        key = os.path.abspath(os.fspath(path))
        with cls._lock:
            store = cls._stores.get(key)
            if store is None:
                store = cls._stores[key] = SqliteStore(key)
            return store

    def conn(self) -> sqlite3.Connection:
        key = (os.getpid(), threading.get_ident())
        conn = self._conns.get(key)
        if conn is None:
            with room_for(self.path, doing="making its directory", fix=FULL_FIX):
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30, factory=_Connection
            )
            conn.path = self.path
            try:
                # Only a new database takes auto_vacuum (an older one keeps its mode; VACUUM converts it):
                # with it, space freed by items that left is given back by `tidy`, not kept forever.
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                _wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            except BaseException:  # (a new file on a full disk): the next call tries again
                conn.close()
                raise
            self._conns[key] = conn
        return conn

    @contextlib.contextmanager
    def writing(self, doing: str) -> Iterator[None]:
        """The block writes to this file for `doing` ("pushing item 'x' to queue 'y'"): a full disk's
        `StorageFull` says so (the blob store's says which blob it was writing, and passes as it is).
        Also for the errors a statement's cursor raises as it steps on (an `UPDATE … RETURNING` in
        autocommit commits, and may find the disk full, only when its rows are fetched)."""
        try:
            yield
        except (StorageFull, sqlite3.Error) as e:
            full = e if isinstance(e, StorageFull) else full_database(e, self.path)
            if full is None or full.path != self.path:
                raise
            raise StorageFull(
                full.path, doing=f"{doing}: {full.doing}", free=full.free, mount=full.mount, fix=full.fix,
                quota=full.quota,
            ) from (e.__cause__ if full is e else e)

    def version(self) -> int:
        """Changes whenever another connection commits to the file (SQLite's `data_version`)."""
        return int(self.conn().execute("PRAGMA data_version").fetchone()[0])

    async def wait(self, waiter: asyncio.Future[None], version: int, due: float | None = None) -> None:
        """Until this process notifies (the `waiter`, of a `notifier`), another process commits (`version()`
        moves past `version`, read before the caller last looked), or `due` (monotonic)."""
        interval = FIRST_LOOK
        while True:
            timeout = interval if due is None else min(interval, max(due - time.monotonic(), 0))
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
                return
            except TimeoutError:
                pass
            if due is not None and time.monotonic() >= due:
                return
            if self.version() != version:
                return
            interval = min(interval * 2, POLL_SECONDS)

    def tidy(self, *, force: bool = False) -> None:
        """Give free pages back and checkpoint the WAL, at most every `TIDY_SECONDS` (cheap when there is nothing to do)."""
        now = time.monotonic()
        if not force and now - self._tidied < TIDY_SECONDS:
            return
        self._tidied = now
        conn = self.conn()
        try:
            # executescript steps the pragma to its end (execute() would free a single page)
            conn.executescript("PRAGMA incremental_vacuum(4096);")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except (sqlite3.OperationalError, StorageFull):  # busy (another process writes), or no room: next time
            pass

    def ensure_table(self, table: str) -> None:
        key = (os.getpid(), table)
        if key in self._tables:
            return
        conn = self.conn()
        with self.writing(f"making the table of queue {table!r}"):
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{table}" (seq INTEGER PRIMARY KEY AUTOINCREMENT, '
                "id TEXT NOT NULL UNIQUE, value BLOB NOT NULL, at REAL, claimed_by TEXT, claimed_until REAL)"
            )
            columns = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
            # Files from before items had a time (`at` NULL for those) or claims (none yet): add the columns.
            for column, kind in (("at", "REAL"), ("claimed_by", "TEXT"), ("claimed_until", "REAL")):
                if column not in columns:
                    with contextlib.suppress(sqlite3.OperationalError):  # (another process added it meanwhile)
                        conn.execute(f'ALTER TABLE "{table}" ADD COLUMN {column} {kind}')
        self._tables.add(key)

    def ensure_schema(self, name: str, statements: Sequence[str]) -> None:
        """Run `statements` (`CREATE … IF NOT EXISTS`) once per process: the tables of `name`, a part of
        the file other than the queues (task locks, the ledger of decisions)."""
        key = (os.getpid(), name)
        if key in self._tables:
            return
        conn = self.conn()
        with self.writing(f"making the tables of the {name}"):
            for sql in statements:
                conn.execute(sql)
        self._tables.add(key)

    def claims(self) -> Claims:
        """This process's claims on the rows of this file (made anew in a forked child)."""
        claims = self._claims
        if claims is None or claims.pid != os.getpid():
            claims = self._claims = Claims(self)
        return claims

    def catalog(self) -> SqliteCatalog:
        """The file's schema catalog, attached to this process's catalogs (codecs find writers there)."""
        catalog = self._catalog
        if catalog is None:
            catalog = self._catalog = SqliteCatalog(self)
            catalogs.attach(catalog)
        return catalog

    def notifier(self, table: str) -> Notifier:
        n = self._notifiers.get(table)
        if n is None:
            n = self._notifiers[table] = Notifier()
        return n

    def close(self) -> None:
        if self._catalog is not None:
            catalogs.detach(self._catalog)
            self._catalog = None
        if self._claims is not None and self._claims.pid == os.getpid():
            self._claims.release()  # the items this process read and did not finish: others may read them now
            self._claims = None
        for key, conn in list(self._conns.items()):
            if key[0] == os.getpid():
                conn.close()
                del self._conns[key]
        self._tables.clear()
