"""The SQLite backend (`SqliteBackend`, `sqlite:///path/queues.db`): what its URL says, and the queues,
locks, ledger and schema catalog it makes in one file."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pipeteer import settings
from pipeteer.codec.catalog import SchemaCatalog
from pipeteer.codec.claimcheck import ClaimCheck, claim_check_from
from pipeteer.errors import ConfigError
from pipeteer.queues.base import NO_HOOKS, Backend, BaseQueue, QueueHooks, Retry
from pipeteer.queues.ledger import Ledger
from pipeteer.queues.locks import Locks
from pipeteer.queues.sqlite.blobrefs import referenced_keys
from pipeteer.queues.sqlite.claims import CLAIM_SECONDS
from pipeteer.queues.sqlite.queue import SqliteQueue
from pipeteer.queues.sqlite.review import SqliteLedger, SqliteLocks
from pipeteer.queues.sqlite.store import SqliteStore


@dataclass
class SqliteBackend(Backend):
    """One table per queue path (`'-'.join(path)`, as the project page names them) in one SQLite file."""

    url: str
    path: str
    claim: ClaimCheck | None = None
    """Large `bytes` go to this blob store (by default a directory beside the database, see `default_blobs`)."""
    retry: Retry = field(default_factory=Retry)
    claim_seconds: float = CLAIM_SECONDS
    """How long an item a process read stays its own if the process stops renewing it (killed): `claim_seconds=`."""
    schema_dir: str | None = None
    """`.avsc` files of other versions of the states (`schema_dir=`, `PIPETEER_SCHEMA_DIR`), besides the
    schemas every process publishes in the file itself."""
    hooks: QueueHooks = NO_HOOKS

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, str], env: Mapping[str, str], *, blobs: str | None,
                 threshold: str | None, retry: Retry, hooks: QueueHooks = NO_HOOKS) -> SqliteBackend:
        """The backend of `sqlite:///relative/path.db` or `sqlite:////absolute/path.db` (as SQLAlchemy
        spells them), given the URL's `options`, the environment and what every embedded backend reads
        of them (`pipeteer.queues.backends`)."""
        parts = urlsplit(url)
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path:
            raise ConfigError(
                f"backend URL {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        claim = claim_check_from(blobs, threshold, default=default_blobs(path), where=f"backend URL {url!r}")
        schema_dir = env.get(settings.SCHEMA_DIR.name, options.get("schema_dir")) or None
        return cls(url, path, claim, retry, claim_seconds(options.get("claim_seconds"), url), schema_dir, hooks)

    def make_queue(self, Type: Any, path: Sequence[str], /) -> BaseQueue[Any]:
        return SqliteQueue(
            Type, path=self.path, table="-".join(path), claim=self.claim, claim_seconds=self.claim_seconds,
            schema_dir=self.schema_dir, retry=self.hooks.policy(self.retry), on_dead_letter=self.dead_letter_hook(path),
        )

    def claim_check(self) -> ClaimCheck | None:
        return self.claim

    def referenced_blob_keys(self) -> set[str]:
        """The blob keys every table of the file references, read in one snapshot (`sqlite.blobrefs`)."""
        return referenced_keys(self.path)

    def schema_catalog(self) -> SchemaCatalog:
        """The schemas table of the file (`pipeteer.queues.sqlite.catalog`)."""
        return SqliteStore.at(self.path).catalog()

    def _new_ledger(self) -> Ledger:
        """The ledger of decisions in the database file (`SqliteLedger`): every process records there."""
        return SqliteLedger(self.path)

    def _new_locks(self) -> Locks:
        """The task locks in the database file (`SqliteLocks`): every process using it sees them."""
        return SqliteLocks(self.path)

    def close(self) -> None:
        SqliteStore.at(self.path).close()


def default_blobs(db_path: str) -> str:
    """The blob directory of a SQLite database: beside it, named after it.

    >>> default_blobs("data/queues.db")
    'data/queues.blobs'
    """
    root, ext = os.path.splitext(db_path)
    return (root if ext else db_path) + ".blobs"


def claim_seconds(raw: str | None, url: str) -> float:
    """The `claim_seconds=` option of a SQLite URL: a positive number of seconds (default 30).

    >>> claim_seconds("2.5", "sqlite:///q.db?claim_seconds=2.5"), claim_seconds(None, "sqlite:///q.db")
    (2.5, 30.0)
    """
    if raw is None or raw == "":
        return SqliteBackend.claim_seconds
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ConfigError(f"backend URL {url!r}: claim_seconds={raw!r} is not a number of seconds > 0")
    return seconds
