"""A queue in a table of a SQLite file (`SqliteQueue`): the embedded default's queue.

Each queue is a table `(seq, id, value)`; values are the same Avro single-object
bytes the Kafka topics carry (`pipeteer.codec`). The file and its connections are the
store's (`store`); which process reads which row, the claims' (`claims`).

Exactly-once here is a property of one SQLite transaction: moving an item to the
next stage deletes it from this stage's table and inserts it into the next one in
a single `BEGIN IMMEDIATE … COMMIT`. A process killed at any instant leaves the
item either wholly before or wholly after the move, never in both or neither.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from pipeteer.codec import SchemaStore, codec_for
from pipeteer.codec.claimcheck import ClaimCheck
from pipeteer.errors import ConfigError, InexistentItem, Unavailable, UnreadableRecord
from pipeteer.queues.base import BaseQueue, DeadLetter, Held, Listing, Pending, Retry, check_page, take_turn
from pipeteer.queues.sqlite.claims import CLAIM_SECONDS, Claims
from pipeteer.queues.sqlite.deadletters import DeadLetterTable
from pipeteer.queues.sqlite.store import SqliteStore, transaction

T = TypeVar("T")
U = TypeVar("U")

log = logging.getLogger("pipeteer.sqlite")

_PAGE = 256

CLAIM_AHEAD_SECONDS = 0.05
CLAIM_AHEAD_MOST = 64
"""A read claims the oldest item and, when the stage is fast, more behind it: as many as the stage
goes through in `CLAIM_AHEAD_SECONDS` (at most `CLAIM_AHEAD_MOST`), handed out by the next reads
without another write. One write per item would cost a fast stage half its speed; holding no more
than 50 ms of work keeps the split fair, and a slow stage (seconds an item) claims one at a time."""


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
        retry: Retry | None = None,
        on_dead_letter: Callable[[str], None] | None = None,
    ) -> None:
        if not table or '"' in table or "\x00" in table:
            raise ConfigError(f"invalid SQLite table name {table!r}: use letters, digits, '-' or '_'")
        super().__init__(Type, table, retry=retry, on_dead_letter=on_dead_letter)
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
        self._letters = DeadLetterTable(self.store, table)

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
                await self.store.wait(waiter, version, due)
            finally:
                waiter.cancel()

    def _next_claimed(self, claims: Claims) -> tuple[str, bytes] | None:
        """The next item this queue claimed ahead, as it is now (None when there is none left)."""
        while self._claimed:
            id = self._claimed.popleft()
            data = claims.value(self.table, id)
            if data is not None:
                return id, data
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
        ahead = max(1, min(CLAIM_AHEAD_MOST, int(CLAIM_AHEAD_SECONDS / max(self._pace, 1e-6))))
        now = time.time()
        rows = claims.take(self.table, self.claim_seconds, ahead, skip, now)
        if rows:
            self._claimed.extend(id for _, id, _ in rows[1:])
            return (rows[0][1], rows[0][2]), due
        expiry = claims.next_expiry(self.table, now)
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
            claims.give_up(self.table, id)

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
        """The file's version now (`SqliteStore.version`), the table made first: the claims read next find it."""
        self.store.ensure_table(self.table)
        return self.store.version()

    def _dead_letter(self, id: str, error_class: str, message: str, trace: str, attempts: int) -> None:
        self._letters.set_aside(self._conn(), id, error_class, message, trace, attempts)
        self.store.claims().discard(self.table, id)

    def dead_letters(self) -> list[DeadLetter]:
        """The items this queue's stage gave up on, oldest first."""
        return [DeadLetter(r[0], self.letter_value(r[1]), *r[2:]) for r in self._letters.letters(self._conn())]

    def replay(self, ids: Sequence[str] | None = None) -> list[str]:
        """Put dead letters back in the queue (all, or the latest of each id given), in one transaction."""
        back = self._letters.replay(self._conn(), ids)
        self.store.notifier(self.table).notify()
        return back

    async def wait_change(self) -> None:
        # A view (filter) looked before calling this, at a data_version it did not keep: wake on any
        # change from now on, and after 50 ms at the latest in case one came in between.
        waiter = self.store.notifier(self.table).waiter()
        try:
            await self.store.wait(waiter, self._version(), time.monotonic() + 0.05)
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
