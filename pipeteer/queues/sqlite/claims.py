"""Which process reads which item of a SQLite queue: claims on rows, each with a lease.

Several processes (and several tasks) running one stage split its work: `read()` *claims* the
oldest unclaimed row in the same statement that finds it (`UPDATE … RETURNING`: atomic, as SQLite
runs one writer at a time), writing this process's name and a lease expiry in the row. Claims
only decide who reads what; they are not needed for correctness. A move or pop deletes the row
and its claim with it; a process's claims are renewed by a thread while it lives (`Claims`), given
up when its backend closes, and simply expire when it is killed, after which another process
reads the item again. Should two processes ever work on one item (a lease that ran out), the
first move wins and the other's raises `InexistentItem`: the output is still written once.

Every statement that writes or reads a claim (`claimed_by`, `claimed_until`) is in this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection
from typing import TYPE_CHECKING

from pipeteer.errors import StorageFull

if TYPE_CHECKING:
    from pipeteer.queues.sqlite.store import SqliteStore

log = logging.getLogger("pipeteer.sqlite")

CLAIM_SECONDS = 30.0
"""How long a claim on an item lasts unless renewed (`claim_seconds=` in the URL): the longest an item
read by a process that was killed waits before another process reads it. Renewed every third of it
while the process lives, so items that take longer to process stay with their process."""

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

    def take(self, table: str, lease: float, ahead: int, skip: Collection[str], now: float) -> list[tuple[int, str, bytes]]:
        """Claim, for `lease` seconds from `now`, the `ahead` oldest rows of `table` that no other process
        holds (this process's own claims are taken again) and whose ids are not in `skip`, in the statement
        that finds them: `(seq, id, value)` of each, oldest first."""
        marks = ",".join("?" * len(skip))
        with self.store.writing(f"claiming items of queue {table!r} to read"):
            rows: list[tuple[int, str, bytes]] = self.store.conn().execute(
                f'UPDATE "{table}" SET claimed_by = ?, claimed_until = ? WHERE seq IN (SELECT seq FROM "{table}" '
                "WHERE (claimed_until IS NULL OR claimed_until < ? OR claimed_by = ?) "
                + (f"AND id NOT IN ({marks}) " if skip else "")
                + f"ORDER BY seq LIMIT {ahead}) RETURNING seq, id, value",
                (self.owner, now + lease, now, self.owner, *skip),
            ).fetchall()
        rows.sort()
        for _, id, _ in rows:
            self.add(table, id, lease)
        return rows

    def next_expiry(self, table: str, now: float) -> float | None:
        """When the first claim another process holds on a row of `table` runs out, unless renewed (wall
        clock; None: no other process holds one at `now`)."""
        expiry: float | None = self.store.conn().execute(
            f'SELECT MIN(claimed_until) FROM "{table}" WHERE claimed_until >= ? AND claimed_by != ?', (now, self.owner)
        ).fetchone()[0]
        return expiry

    def value(self, table: str, id: str) -> bytes | None:
        """The value of the row `id` of `table` while this process claims it (None: the row is gone, or
        another process claims it now)."""
        row = self.store.conn().execute(
            f'SELECT value FROM "{table}" WHERE id = ? AND claimed_by = ?', (id, self.owner)
        ).fetchone()
        if row is None:
            return None
        data: bytes = row[0]
        return data

    def give_up(self, table: str, id: str) -> None:
        """Unclaim the row `id` of `table`, if this process claims it: another process may read it now."""
        self.store.conn().execute(
            f'UPDATE "{table}" SET claimed_by = NULL, claimed_until = NULL WHERE id = ? AND claimed_by = ?',
            (id, self.owner),
        )
        self.discard(table, id)

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
