"""`pipeteer blobs gc`: remove the blobs that no pending item, output or dead letter references.

    pipeteer blobs gc APP --backend sqlite:///q.db              # dry run: how many, how large
    pipeteer blobs gc APP --backend sqlite:///q.db --delete     # remove them

Safe while stages run:

- References are found in one consistent view, by the backend (`Backend.referenced_blob_keys`,
  in each backend's own module). SQLite: every table (queues, outputs, dead letters) read in one
  read transaction, so an item moving from one table to the next is seen in exactly one of them.
  Memory: every queue's items and dead letters, with no await in between. Kafka: each stage's committed input offsets are read first, then every
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
from pipeteer.errors import ConfigError
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


def gc(queues: WorkflowQueues, *, grace: float = DEFAULT_GRACE, delete: bool = False) -> Collection:
    """Find (and with `delete`, remove) the blobs of the workflow's backend that nothing references."""
    backend = queues.backend
    claim, referenced = backend.claim_check(), backend.referenced_blob_keys()
    if claim is None:
        raise ConfigError(f"blobs gc: backend {backend.url} has no blob store (set blobs= or PIPETEER_BLOBS)")
    return collect(claim.store, referenced, grace=grace, delete=delete)
