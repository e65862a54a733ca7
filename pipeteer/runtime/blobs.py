"""`pipeteer blobs gc`: remove the blobs that no pending item, output or dead letter references.

    pipeteer blobs gc APP --backend sqlite:///q.db              # dry run: how many, how large
    pipeteer blobs gc APP --backend sqlite:///q.db --delete     # remove them

Safe while stages run:

- References are found in one consistent view. SQLite: every table (queues, outputs, dead
  letters) read in one read transaction, so an item moving from one table to the next is seen
  in exactly one of them. Kafka: each stage's committed input offsets are read first, then every
  topic of the workflow from those offsets to its end (changelogs and dead letters whole), so an
  item that moves meanwhile is found in its newer place. Records are scanned as bytes for
  references, whatever their schema.
- A blob written (or re-used by a push, which renews its time) within the grace period is never
  removed: a value being pushed has its blobs stored *before* its record exists. The time is
  checked again just before each removal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pipeteer.codec.blobstore import BlobInfo, BlobStore
from pipeteer.codec.claimcheck import ClaimCheck, keys_in
from pipeteer.errors import ConfigError
from pipeteer.queues.memory import MemoryBackend
from pipeteer.wiring import WorkflowQueues

DEFAULT_GRACE = 3600.0
"""Seconds a blob is spared after it was written or re-used (longer than any push of one item takes)."""

@dataclass
class Collection:
    """What a gc found: blobs referenced, blobs it may remove (older than the grace period), removed."""

    referenced: set[str]
    unreferenced: list[BlobInfo] = field(default_factory=list)
    removed: int = 0
    removed_bytes: int = 0

    @property
    def unreferenced_bytes(self) -> int:
        return sum(b.size for b in self.unreferenced)


def collect(store: BlobStore, referenced: set[str], *, grace: float = DEFAULT_GRACE, delete: bool = False) -> Collection:
    """The blobs of `store` not in `referenced` and older than `grace` seconds; removed if `delete`."""
    cutoff = time.time() - grace
    out = Collection(referenced)
    out.unreferenced = [b for b in store.list() if b.key not in referenced and b.modified < cutoff]
    if delete:
        for b in out.unreferenced:
            if store.delete(b.key, written_before=cutoff):
                out.removed += 1
                out.removed_bytes += b.size
    return out


def referenced_sqlite(path: str) -> set[str]:
    """Every key referenced by any table of a SQLite file, read in one transaction (one snapshot)."""
    import sqlite3  # here: `pipeteer --help` and the Kafka commands need no SQLite

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


def referenced_memory(backend: MemoryBackend) -> set[str]:
    from pipeteer.queues.memory import MemoryQueue

    found: set[str] = set()
    for q in backend.queues.values():
        if isinstance(q, MemoryQueue):  # items and dead letters are kept encoded: scanned as bytes
            for data in [*q._items.values(), *(data for _, data in q._dead.values())]:
                found |= keys_in(data)
    return found


def referenced_keys(queues: WorkflowQueues) -> tuple[ClaimCheck | None, set[str]]:
    """The backend's claim check (None: it has none) and every blob key its items reference."""
    from pipeteer.queues.sqlite import SqliteBackend  # here: the Kafka commands need no SQLite

    backend = queues.backend
    if isinstance(backend, SqliteBackend):
        return backend.claim, referenced_sqlite(backend.path)
    if isinstance(backend, MemoryBackend):
        return backend.claim, referenced_memory(backend)
    from pipeteer.queues.kafka import KafkaBackend
    from pipeteer.queues.kafka.blobrefs import referenced_kafka

    if isinstance(backend, KafkaBackend):
        return backend.claim_check(), referenced_kafka(backend)
    raise ConfigError(f"blobs gc: backend {backend!r} is not supported")


def gc(queues: WorkflowQueues, *, grace: float = DEFAULT_GRACE, delete: bool = False) -> Collection:
    """Find (and with `delete`, remove) the blobs of the workflow's backend that nothing references."""
    claim, referenced = referenced_keys(queues)
    if claim is None:
        raise ConfigError(f"blobs gc: backend {queues.backend.url} has no blob store (set blobs= or PIPETEER_BLOBS)")
    return collect(claim.store, referenced, grace=grace, delete=delete)
