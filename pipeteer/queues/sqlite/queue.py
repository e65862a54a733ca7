"""Queues in one SQLite file: the embedded default (`sqlite:///path/queues.db`).

Each queue is a table `(seq, id, value)`; values are the same Avro single-object
bytes the Kafka topics carry (`pipeteer.codec`). The file is in WAL mode, so
several processes can share it: readers never block the writer.

Exactly-once here is a property of one SQLite transaction: moving an item to the
next stage deletes it from this stage's table and inserts it into the next one in
a single `BEGIN IMMEDIATE … COMMIT`. A process killed at any instant leaves the
item either wholly before or wholly after the move, never in both or neither.

Several processes (and several tasks) running one stage split its work: `read()` *claims* the
oldest unclaimed row in the same statement that finds it (`UPDATE … RETURNING`: atomic, as SQLite
runs one writer at a time), writing this process's name and a lease expiry in the row. Claims
only decide who reads what; they are not needed for correctness. A move or pop deletes the row
and its claim with it; a process's claims are renewed by a thread while it lives (`Claims`), given
up when its backend closes, and simply expire when it is killed, after which another process
reads the item again. Should two processes ever work on one item (a lease that ran out), the
first move wins and the other's raises `InexistentItem`: the output is still written once.

A file system that fills up (the file, its WAL, or the blob store beside it) fails the write with
`StorageFull`, naming the file and the space left, and leaves everything as it was: SQLite rolls
the statement or transaction back, and a row is written only after its blobs are whole. A stage
whose output found no room gives its item back to itself, so that it is read again once the
service has waited (`StorageFull` is `Unavailable`: no attempt is counted, no dead letter made).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

from pipeteer.codec import SchemaStore, catalogs, codec_for
from pipeteer.codec.blobstore import free_space, room_for
from pipeteer.codec.claimcheck import ClaimCheck
from pipeteer.errors import ConfigError, InexistentItem, StorageFull, Unavailable, UnreadableRecord
from pipeteer.queues.base import BaseQueue, DeadLetter, Held, Listing, Pending, check_page, take_turn
from pipeteer.queues.memory import Notifier
from pipeteer.queues.sqlite.catalog import SqliteCatalog

T = TypeVar("T")
U = TypeVar("U")

log = logging.getLogger("pipeteer.sqlite")

POLL_SECONDS = 0.01
"""The longest a waiting reader goes without noticing a push by *another process* (same-process pushes
wake it at once). It checks the file's `data_version` (cheap: no query) every 1 ms at first, backing
off to this while nothing changes."""
FIRST_LOOK = 0.001

_PAGE = 256

WAL_LIMIT = 32 << 20
"""`journal_size_limit`: after a checkpoint resets the WAL, its file is truncated to this size, so a
long stream does not leave a WAL as large as its largest burst."""

CLAIM_SECONDS = 30.0
"""How long a claim on an item lasts unless renewed (`claim_seconds=` in the URL): the longest an item
read by a process that was killed waits before another process reads it. Renewed every third of it
while the process lives, so items that take longer to process stay with their process."""

CLAIM_AHEAD_SECONDS = 0.05
CLAIM_AHEAD_MOST = 64
"""A read claims the oldest item and, when the stage is fast, more behind it: as many as the stage
goes through in `CLAIM_AHEAD_SECONDS` (at most `CLAIM_AHEAD_MOST`), handed out by the next reads
without another write. One write per item would cost a fast stage half its speed; holding no more
than 50 ms of work keeps the split fair, and a slow stage (seconds an item) claims one at a time."""

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
                conn.execute("PRAGMA journal_mode=WAL")
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


DEAD_CHECK_SECONDS = 1.0
"""At most this often per table, a reader that finds every item claimed looks for claims of this
host's processes that are gone (`Claims.release_dead`): the look scans the table."""


def _alive(owner: str) -> bool:
    """Whether the process named `owner` (`host:pid:random`, of this host) still exists."""
    try:
        pid = int(owner.split(":")[1])
    except (IndexError, ValueError):
        return True  # not a name this module wrote: leave it to its lease
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Claims:
    """The items this process claimed on one SQLite file, by table: renewed by a thread while the
    process lives (so a kill -9 lets them expire), released when its backend closes.

    Each process has a name of its own (host, pid and a random part: a pid is reused, a name is
    not), written in the rows it claims.
    """

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.pid = os.getpid()
        self.owner = f"{socket.gethostname()}:{self.pid}:{uuid.uuid4().hex[:12]}"
        self.held: dict[str, set[str]] = {}  # table -> ids claimed (read, not finished)
        self.leases: dict[str, float] = {}  # table -> seconds a claim lasts
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._dead_checked: dict[str, float] = {}  # table -> when its owners were last checked (monotonic)

    def add(self, table: str, id: str, lease: float) -> None:
        with self._lock:
            self.held.setdefault(table, set()).add(id)
            self.leases[table] = lease
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_loop, name="pipeteer-sqlite-claims", daemon=True)
                self._renewer.start()

    def discard(self, table: str, id: str) -> None:
        with self._lock:
            self.held.get(table, set()).discard(id)

    def busy(self, table: str) -> set[str]:
        with self._lock:
            return set(self.held.get(table, ()))

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._every()):
            if not os.path.exists(self.store.path):  # the file was deleted (a test's): nothing to renew
                return
            try:
                self.renew()
            except (sqlite3.Error, StorageFull):  # busy, closed, full: next time (the lease leaves two more tries)
                pass

    def _every(self) -> float:
        with self._lock:
            return min(self.leases.values(), default=CLAIM_SECONDS) / 3

    def renew(self) -> None:
        """Push the expiry of every claim this process holds a lease further; forget the ids whose
        rows are gone or were taken by another process (their lease had run out)."""
        with self._lock:
            held = {table: set(ids) for table, ids in self.held.items() if ids}
        conn = self.store.conn()
        for table, ids in held.items():
            marks = ",".join("?" * len(ids))
            kept = {
                row[0]
                for row in conn.execute(
                    f'UPDATE "{table}" SET claimed_until = ? WHERE claimed_by = ? AND id IN ({marks}) RETURNING id',
                    (time.time() + self.leases[table], self.owner, *ids),
                )
            }
            with self._lock:
                self.held.get(table, set()).difference_update(ids - kept)

    def release_dead(self, table: str) -> int:
        """Free the claims in `table` of processes of this host that are gone (killed): a restarted
        stage takes their items at once instead of when their leases run out. (A process that cannot
        be told dead, e.g. on another host, keeps its claim until its lease runs out.)"""
        now = time.monotonic()
        with self._lock:  # a waiting reader wakes at every commit of another process: look once a second
            if now - self._dead_checked.get(table, -DEAD_CHECK_SECONDS) < DEAD_CHECK_SECONDS:
                return 0
            self._dead_checked[table] = now
        host = socket.gethostname()
        conn = self.store.conn()
        owners = [
            row[0]
            for row in conn.execute(
                f'SELECT DISTINCT claimed_by FROM "{table}" WHERE claimed_by != ? AND claimed_until >= ?',
                (self.owner, time.time()),
            )
        ]
        dead = [owner for owner in owners if owner.partition(":")[0] == host and not _alive(owner)]
        if not dead:
            return 0
        marks = ",".join("?" * len(dead))
        freed = conn.execute(
            f'UPDATE "{table}" SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by IN ({marks})', dead
        ).rowcount
        log.info("freed %d item(s) of %s claimed by stopped process(es) %s", freed, table, ", ".join(dead))
        return int(freed)

    def release(self) -> None:
        """Give up every claim (the process stops): other processes read those items at once."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(5)
        with self._lock:
            tables = [table for table, ids in self.held.items() if ids]
            self.held.clear()
        conn = self.store.conn()
        for table in tables:
            with contextlib.suppress(sqlite3.Error, StorageFull):  # the lease expires anyway
                conn.execute(
                    f'UPDATE "{table}" SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?', (self.owner,)
                )


class SqliteQueue(BaseQueue[T]):
    """A queue stored in a table of a SQLite file.

    >>> import asyncio, tempfile, os
    >>> q = SqliteQueue(str, path=os.path.join(tempfile.mkdtemp(), "q.db"), table="words")
    >>> asyncio.run(q.push("1", "hello")); asyncio.run(q.read("1"))
    'hello'
    """

    def __init__(
        self,
        Type: Any,
        *,
        path: str | os.PathLike[str],
        table: str,
        claim: ClaimCheck | None = None,
        claim_seconds: float = CLAIM_SECONDS,
        schema_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not table or '"' in table or "\x00" in table:
            raise ConfigError(f"invalid SQLite table name {table!r}: use letters, digits, '-' or '_'")
        super().__init__(Type, table)
        self.store = SqliteStore.at(path)
        self.store.catalog()  # (attached: this queue's codec finds the schemas other versions wrote with)
        self.table = table
        self.codec = codec_for(Type)
        if schema_dir is not None:  # older versions an operator keeps (a stale file is refused here, at start)
            SchemaStore.from_dir(schema_dir).attach(self.codec)
        self.claim = claim if claim is not None and claim.applies_to(Type) else None
        """Large `bytes` are stored as blobs (rows carry references), hydrated off the event loop when read."""
        self._published = False
        self.claim_seconds = claim_seconds
        """How long a claim `read()` takes on an item lasts unless renewed (see `CLAIM_SECONDS`)."""
        self._claimed: deque[str] = deque()  # claimed ahead by this queue's reads, not handed out yet
        self._pace = CLAIM_AHEAD_SECONDS  # seconds the stage takes per item (moving average): one at first
        self._handed_at: float | None = None

    def describe(self) -> str:
        return f"queue {self.table!r} ({self.store.path})"

    def _conn(self) -> sqlite3.Connection:
        self.store.ensure_table(self.table)
        return self.store.conn()

    def _source(self, id: str) -> str:
        return f"SQLite table {self.table!r} item {id!r} in {self.store.path}"

    def _decode(self, id: str, data: bytes) -> T:
        """The stored value, references and all (no blob I/O)."""
        return self.codec.decode(data, source=self._source(id))

    async def _value(self, id: str, data: bytes) -> T:
        return await self.hydrate(id, self._decode(id, data))

    def publish(self) -> None:
        """Publish the schema this queue's rows are written with to the file's catalog (once per process),
        before the first row: every reader of the file finds it when it meets one."""
        if not self._published:
            self.store.catalog().publish([self.codec.schema])
            self._published = True

    async def _push(self, id: str, value: T) -> None:
        data = await self.encode(value)  # blobs first: a row never references one that is not whole
        with self.store.writing(f"pushing item {id!r} to queue {self.table!r}"):
            self.publish()
            self._conn().execute(
                f'INSERT INTO "{self.table}" (id, value, at) VALUES (?, ?, ?) '
                "ON CONFLICT(id) DO UPDATE SET value = excluded.value",
                (id, data, time.time()),
            )
        self.store.notifier(self.table).notify()

    async def _read_next(self) -> tuple[str, T]:
        notifier = self.store.notifier(self.table)
        claims = self.store.claims()
        if self._handed_at is not None:  # how long the stage took over the last item: sizes the next claim
            self._pace += (time.monotonic() - self._handed_at - self._pace) * 0.2
        while True:
            waiter = notifier.waiter()
            version = self._version()  # before looking: a commit after this line wakes the wait below
            row = self._next_claimed(claims)
            due = None
            if row is None:
                row, due = self._claim_oldest(claims)
            if row is not None:
                waiter.cancel()
                self._held = row[0]  # set first: a missing blob fails *this* item (retry, dead letter)
                await take_turn()  # under a backlog, the process's other tasks still get the loop
                try:
                    value = await self._value(row[0], row[1])
                except UnreadableRecord as e:  # another version's record: held, and the next one
                    self._held = None
                    self._hold(row[0], e, claims)
                    continue
                self._unreadable.pop(row[0], None)
                self._handed_at = time.monotonic()
                return row[0], value
            try:
                await self._wait(waiter, version, due)
            finally:
                waiter.cancel()

    def _next_claimed(self, claims: Claims) -> tuple[str, bytes] | None:
        """The next item this queue claimed ahead, as it is now (None when there is none left)."""
        while self._claimed:
            id = self._claimed.popleft()
            row = self._conn().execute(
                f'SELECT value FROM "{self.table}" WHERE id = ? AND claimed_by = ?', (id, claims.owner)
            ).fetchone()
            if row is not None:
                return id, row[0]
            claims.discard(self.table, id)  # completed by id meanwhile (or its claim ran out: taken elsewhere)
        return None

    def _claim_oldest(self, claims: Claims) -> tuple[tuple[str, bytes] | None, float | None]:
        """Claim the oldest items no other process holds and this one is not working on or waiting to
        retry: the first to hand out now, the others (as many as `CLAIM_AHEAD_SECONDS` of work) next.
        None when there is none, with the monotonic time a retry or another process's claim falls due."""
        deferred, due = self._deferred()  # items waiting out a retry delay go last
        held, held_due = self._held_now()  # rows of another version, until they are looked at again
        deferred |= held
        due = held_due if due is None else (due if held_due is None else min(due, held_due))
        # This process's items in progress (another task, or another queue object, has them) are not
        # read twice; those it failed are read again here once their delay is over.
        skip = (claims.busy(self.table) - self._failures.keys()) | deferred
        marks = ",".join("?" * len(skip))
        ahead = max(1, min(CLAIM_AHEAD_MOST, int(CLAIM_AHEAD_SECONDS / max(self._pace, 1e-6))))
        now = time.time()
        with self.store.writing(f"claiming items of queue {self.table!r} to read"):
            rows = self._conn().execute(
                f'UPDATE "{self.table}" SET claimed_by = ?, claimed_until = ? WHERE seq IN (SELECT seq FROM "{self.table}" '
                "WHERE (claimed_until IS NULL OR claimed_until < ? OR claimed_by = ?) "
                + (f"AND id NOT IN ({marks}) " if skip else "")
                + f"ORDER BY seq LIMIT {ahead}) RETURNING seq, id, value",
                (claims.owner, now + self.claim_seconds, now, claims.owner, *skip),
            ).fetchall()
        if rows:
            rows.sort()
            for _, id, _ in rows:
                claims.add(self.table, id, self.claim_seconds)
            self._claimed.extend(id for _, id, _ in rows[1:])
            return (rows[0][1], rows[0][2]), due
        expiry = self._conn().execute(
            f'SELECT MIN(claimed_until) FROM "{self.table}" WHERE claimed_until >= ? AND claimed_by != ?',
            (now, claims.owner),
        ).fetchone()[0]
        if expiry is not None and claims.release_dead(self.table):  # a killed process's items: now
            return self._claim_oldest(claims)
        if expiry is not None:  # another process's claim: if it is not renewed, look again then
            at = time.monotonic() + (expiry - now) + 0.001
            due = at if due is None else min(due, at)
        return None, due

    def _done(self, id: str) -> None:
        super()._done(id)
        self.store.claims().discard(self.table, id)

    def _hold(self, id: str, error: UnreadableRecord, claims: Claims | None = None) -> None:
        """`BaseQueue._hold`, and this process's claim on the row given up: a process that can read it takes it."""
        if id not in self._unreadable:
            log.debug("%s: item %r is held, not read: %s", self.describe(), id, error)
        super()._hold(id, error)
        if claims is not None:
            self._conn().execute(
                f'UPDATE "{self.table}" SET claimed_by = NULL, claimed_until = NULL WHERE id = ? AND claimed_by = ?',
                (id, claims.owner),
            )
            claims.discard(self.table, id)

    def held(self) -> list[Held]:
        """The rows this process met and cannot read (another version's), still in the table, oldest first."""
        if not self._unreadable:
            return []
        ids = list(self._unreadable)
        present: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            present.update(
                row[0] for row in self._conn().execute(f'SELECT id FROM "{self.table}" WHERE id IN ({marks})', chunk)
            )
        for id in set(ids) - present:  # moved on (a process that could read it took it)
            self._unreadable.pop(id, None)
        return super().held()

    def _version(self) -> int:
        """Changes whenever another connection commits to the file (SQLite's `data_version`)."""
        return int(self._conn().execute("PRAGMA data_version").fetchone()[0])

    async def _wait(self, waiter: asyncio.Future[None], version: int, due: float | None = None) -> None:
        """Until this process pushes (the waiter), another process commits (`data_version` moves past
        `version`, read before the caller last looked), or `due`."""
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
            if self._version() != version:
                return
            interval = min(interval * 2, POLL_SECONDS)

    @property
    def dead_letter_table(self) -> str:
        return f"{self.table}.dead-letters"

    def _ensure_dead_letters(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{self.dead_letter_table}" (seq INTEGER PRIMARY KEY AUTOINCREMENT, '
            "id TEXT NOT NULL, value BLOB NOT NULL, error_class TEXT NOT NULL, error_message TEXT NOT NULL, "
            "stacktrace TEXT NOT NULL, attempts INTEGER NOT NULL, failed_at REAL NOT NULL)"
        )

    def _has_dead_letters(self, conn: sqlite3.Connection) -> bool:
        """Whether the dead-letter table exists (reading needs no write: listing works on a full disk)."""
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return conn.execute(sql, (self.dead_letter_table,)).fetchone() is not None

    def _dead_letter(self, id: str, error_class: str, message: str, trace: str, attempts: int) -> None:
        conn = self._conn()
        with self.store.writing(f"setting item {id!r} of queue {self.table!r} aside as a dead letter"):
            self._ensure_dead_letters(conn)
            with transaction(conn):
                row = conn.execute(f'SELECT value FROM "{self.table}" WHERE id = ?', (id,)).fetchone()
                if row is not None:  # moved on meanwhile (another process): nothing to dead-letter
                    conn.execute(f'DELETE FROM "{self.table}" WHERE id = ?', (id,))
                    conn.execute(
                        f'INSERT INTO "{self.dead_letter_table}" (id, value, error_class, error_message, '
                        "stacktrace, attempts, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (id, row[0], error_class, message, trace, attempts, time.time()),
                    )
        self.store.claims().discard(self.table, id)

    def dead_letters(self) -> list[DeadLetter]:
        """The items this queue's stage gave up on, oldest first."""
        conn = self._conn()
        if not self._has_dead_letters(conn):
            return []
        rows = conn.execute(
            "SELECT id, value, error_class, error_message, stacktrace, attempts, failed_at "
            f'FROM "{self.dead_letter_table}" ORDER BY seq'
        ).fetchall()
        return [DeadLetter(r[0], self.letter_value(r[1]), *r[2:]) for r in rows]

    def replay(self, ids: Sequence[str] | None = None) -> list[str]:
        """Put dead letters back in the queue (all, or the latest of each id given), in one transaction."""
        conn = self._conn()
        if not self._has_dead_letters(conn):
            return []
        with self.store.writing(f"replaying dead letters into queue {self.table!r}"):
            with transaction(conn):
                rows = conn.execute(
                    f'SELECT seq, id, value FROM "{self.dead_letter_table}" ORDER BY seq'
                ).fetchall()
                latest = {id: value for _, id, value in rows if ids is None or id in ids}
                for id, value in latest.items():
                    conn.execute(
                        f'INSERT INTO "{self.table}" (id, value, at) VALUES (?, ?, ?) '
                        "ON CONFLICT(id) DO UPDATE SET value = excluded.value",
                        (id, value, time.time()),
                    )
                    conn.execute(f'DELETE FROM "{self.dead_letter_table}" WHERE id = ?', (id,))
        self.store.notifier(self.table).notify()
        return list(latest)

    async def wait_change(self) -> None:
        # A view (filter) looked before calling this, at a data_version it did not keep: wake on any
        # change from now on, and after 50 ms at the latest in case one came in between.
        waiter = self.store.notifier(self.table).waiter()
        try:
            await self._wait(waiter, self._version(), time.monotonic() + 0.05)
        finally:
            waiter.cancel()

    async def _read(self, id: str) -> T:
        row = self._conn().execute(f'SELECT value FROM "{self.table}" WHERE id = ?', (id,)).fetchone()
        if row is None:
            raise InexistentItem(id, self.describe())
        try:
            value = self._decode(id, row[0])
        except UnreadableRecord as e:
            self._hold(id, e)
            raise
        self._unreadable.pop(id, None)
        return await self.hydrate(id, value)

    async def has(self, id: str) -> bool:
        sql = f'SELECT 1 FROM "{self.table}" WHERE id = ?'
        return self._conn().execute(sql, (id,)).fetchone() is not None

    async def pop(self, id: str) -> None:
        with self.store.writing(f"popping item {id!r} from queue {self.table!r}"):
            cur = self._conn().execute(f'DELETE FROM "{self.table}" WHERE id = ?', (id,))
        self.store.claims().discard(self.table, id)
        if cur.rowcount == 0:
            raise InexistentItem(id, self.describe())
        self.store.tidy()

    async def _iter_items(self) -> AsyncIterator[tuple[str, T]]:
        # A row of another version is left out (and held), never the end of the listing.
        async for id, data in self._pages("value"):
            try:
                value = self._decode(id, data)
            except UnreadableRecord as e:
                self._hold(id, e)
                continue
            yield id, await self.hydrate(id, value)

    async def _iter_keys(self) -> AsyncIterator[str]:
        async for id, _ in self._pages("NULL"):
            yield id

    def keys(self) -> Listing[str]:
        return Listing(self._iter_keys, self._all_keys)

    async def _all_keys(self) -> list[str]:
        # `await q.keys()` (a console listing thousands of tasks): the same keyset pages, larger, and
        # no generator step per id (10,000 ids: ~3 ms instead of ~25).
        ids: list[str] = []
        last = -1
        while True:
            rows = self._conn().execute(
                f'SELECT seq, id FROM "{self.table}" WHERE seq > ? ORDER BY seq LIMIT {_PAGE * 16}', (last,)
            ).fetchall()
            ids += [id for _, id in rows]
            if len(rows) < _PAGE * 16:
                return ids
            last = rows[-1][0]

    async def _pages(self, column: str) -> AsyncIterator[tuple[str, Any]]:
        # Keyset pages: a long listing never holds the table's read snapshot open for long.
        last = -1
        while True:
            rows = (
                self._conn()
                .execute(
                    f'SELECT seq, id, {column} FROM "{self.table}" WHERE seq > ? ORDER BY seq LIMIT {_PAGE}',
                    (last,),
                )
                .fetchall()
            )
            for seq, id, data in rows:
                last = seq
                yield id, data
            if len(rows) < _PAGE:
                return

    async def move(self, id: str, dst: BaseQueue[U], value: U) -> None:
        try:
            if not (isinstance(dst, SqliteQueue) and dst.store is self.store):
                return await super().move(id, dst, value)
            await self._move(id, dst, value)
        except Unavailable:
            self._give_back(id)
            raise

    async def _move(self, id: str, dst: SqliteQueue[U], value: U) -> None:
        """`move` within one file: one transaction."""
        if not isinstance(id, str) or not id:
            dst.check(id, value)  # raises, naming the queue
        data = await dst.encode(value)  # the codec checks the value's type (ValueTypeError), once
        with self.store.writing(f"moving item {id!r} from queue {self.table!r} to {dst.table!r}"):
            dst.store.ensure_table(dst.table)
            dst.publish()
            conn = self._conn()
            with transaction(conn):
                if conn.execute(f'DELETE FROM "{self.table}" WHERE id = ?', (id,)).rowcount == 0:
                    raise InexistentItem(id, self.describe())
                conn.execute(
                    f'INSERT INTO "{dst.table}" (id, value, at) VALUES (?, ?, ?) '
                    "ON CONFLICT(id) DO UPDATE SET value = excluded.value",
                    (id, data, time.time()),
                )
        self._done(id)
        dst.store.notifier(dst.table).notify()
        self.store.tidy()

    def _give_back(self, id: str) -> None:
        """The item's move could not be written (no room, say): it is still here, its row still claimed
        by this process (until the lease runs out, no renewal: another process may take it then), but
        no longer counted as in progress, so that this process's reads hand it out again. Nothing is
        written (the disk may be full), and no attempt is counted against the item."""
        self.store.claims().discard(self.table, id)
        if self._held == id:
            self._held = None

    def __len__(self) -> int:
        return int(self._conn().execute(f'SELECT COUNT(*) FROM "{self.table}"').fetchone()[0])

    def pending_since(self) -> list[tuple[str, float]]:
        rows = self._conn().execute(f'SELECT id, COALESCE(at, 0.0) FROM "{self.table}" ORDER BY seq').fetchall()
        return [(id, float(at)) for id, at in rows]

    def _where(self, match: str | None, older_than: float | None, now: float | None) -> tuple[str, list[Any]]:
        """The WHERE clause of `count` and `page`, with its parameters. `instr`, not LIKE: `match` is
        literal text (no `%`/`_` wildcards to escape), case-sensitive as `in` is."""
        terms: list[str] = []
        args: list[Any] = []
        if match is not None:
            terms.append("instr(id, ?) > 0")
            args.append(match)
        if older_than is not None:
            terms.append("COALESCE(at, 0.0) <= ?")
            args.append((time.time() if now is None else now) - older_than)
        return (" WHERE " + " AND ".join(terms) if terms else ""), args

    def count(self, *, match: str | None = None, older_than: float | None = None, now: float | None = None) -> int:
        where, args = self._where(match, older_than, now)
        return int(self._conn().execute(f'SELECT COUNT(*) FROM "{self.table}"{where}', args).fetchone()[0])

    def page(self, offset: int = 0, limit: int = 50, *, match: str | None = None, older_than: float | None = None,
             now: float | None = None) -> list[tuple[str, float]]:
        check_page(offset, limit)
        where, args = self._where(match, older_than, now)
        rows = self._conn().execute(
            f'SELECT id, COALESCE(at, 0.0) FROM "{self.table}"{where} ORDER BY seq LIMIT ? OFFSET ?',
            (*args, limit, offset),
        ).fetchall()
        return [(id, float(at)) for id, at in rows]

    async def pending(self) -> Pending:
        count, oldest = self._conn().execute(f'SELECT COUNT(*), MIN(at) FROM "{self.table}"').fetchone()
        return Pending(int(count), None if oldest is None else max(0.0, time.time() - oldest))
