"""Backends named by URL: `memory://`, `sqlite:///path/queues.db` (the default), `kafka://host:port`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from pipeteer import settings
from pipeteer.codec.catalog import SchemaCatalog
from pipeteer.codec.claimcheck import ClaimCheck, claim_check_from
from pipeteer.errors import ConfigError
from pipeteer.queues.base import RETRY_OPTIONS, Backend, BaseQueue, Retry

if TYPE_CHECKING:
    from pipeteer.plan import Plan
    from pipeteer.queues.ledger import Ledger
    from pipeteer.queues.locks import Locks

DEFAULT_BACKEND = "sqlite:///queues.db"


@dataclass
class MemoryBackend(Backend):
    """Queues in this process's memory; the same path gives the same queue."""

    url: str = "memory://"
    queues: dict[tuple[str, ...], BaseQueue[Any]] = field(default_factory=dict)
    claim: ClaimCheck | None = None
    """Large `bytes` go to this blob store (`memory://?blobs=DIR`); none by default."""
    retry: Retry = field(default_factory=Retry)

    def make_queue(self, Type: Any, path: Sequence[str], /) -> BaseQueue[Any]:
        from pipeteer.queues.memory import MemoryQueue

        key = tuple(path)
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = MemoryQueue(Type, "-".join(key), claim=self.claim)
            q.retry = self.retry
        return q


@dataclass
class SqliteBackend(Backend):
    """One table per queue path (`'-'.join(path)`, as the project page names them) in one SQLite file."""

    url: str
    path: str
    claim: ClaimCheck | None = None
    """Large `bytes` go to this blob store (by default a directory beside the database, see `default_blobs`)."""
    retry: Retry = field(default_factory=Retry)
    claim_seconds: float = 30.0
    """How long an item a process read stays its own if the process stops renewing it (killed): `claim_seconds=`."""
    schema_dir: str | None = None
    """`.avsc` files of other versions of the states (`schema_dir=`, `PIPETEER_SCHEMA_DIR`), besides the
    schemas every process publishes in the file itself."""

    def make_queue(self, Type: Any, path: Sequence[str], /) -> BaseQueue[Any]:
        from pipeteer.queues.sqlite import SqliteQueue

        q: BaseQueue[Any] = SqliteQueue(
            Type, path=self.path, table="-".join(path), claim=self.claim, claim_seconds=self.claim_seconds,
            schema_dir=self.schema_dir,
        )
        q.retry = self.retry
        return q

    def schema_catalog(self) -> SchemaCatalog:
        """The schemas table of the file (`pipeteer.queues.sqlite.catalog`)."""
        from pipeteer.queues.sqlite import SqliteStore

        return SqliteStore.at(self.path).catalog()

    def _new_ledger(self) -> Ledger:
        """The ledger of decisions in the database file (`SqliteLedger`): every process records there."""
        from pipeteer.queues.sqlite.review import SqliteLedger

        return SqliteLedger(self.path)

    def _new_locks(self) -> Locks:
        """The task locks in the database file (`SqliteLocks`): every process using it sees them."""
        from pipeteer.queues.sqlite.review import SqliteLocks

        return SqliteLocks(self.path)

    def close(self) -> None:
        from pipeteer.queues.sqlite import SqliteStore

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


def backend_from_url(
    url: str | None,
    *,
    workflow_name: str | None = None,
    env: Mapping[str, str] | None = None,
    plan: Plan | None = None,
) -> Backend:
    """The backend a URL names. None means `$PIPETEER_BACKEND`, else the SQLite default.

    With `plan`, the backend is bound to it at once (`Backend.bind`: a Kafka backend reads nothing
    unbound) and `workflow_name` defaults to the plan's workflow's.

    >>> backend_from_url("sqlite:///data/q.db", workflow_name="wf").path
    'data/q.db'
    >>> backend_from_url("sqlite:////var/lib/q.db", workflow_name="wf").path
    '/var/lib/q.db'
    >>> backend_from_url("sqlite:///q.db?blobs=off", workflow_name="wf", env={}).claim is None
    True
    """
    backend = _from_url(url, workflow_name, env, plan)
    if plan is not None:
        backend.bind(plan)
    return backend


def _from_url(url: str | None, workflow_name: str | None, env: Mapping[str, str] | None, plan: Plan | None) -> Backend:
    env = settings.environ(env)
    url = url or settings.BACKEND.get(env) or DEFAULT_BACKEND
    parts = urlsplit(url)
    if parts.scheme in ("memory", "sqlite"):
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        known = ["blobs", "claim_check_bytes", *RETRY_OPTIONS,
                 *(["claim_seconds", "schema_dir"] if parts.scheme == "sqlite" else [])]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"backend URL {url!r}: unknown option(s) {unknown}; known: {', '.join(known)}")
        blobs = env.get(settings.BLOBS.name, options.get("blobs"))
        threshold = env.get(settings.CLAIM_CHECK_BYTES.name, options.get("claim_check_bytes"))
        # the retry policy: URL query < environment, as on Kafka
        retry = Retry.from_options({k: env.get(v, options.get(k, "")) for k, v in RETRY_OPTIONS.items()},
                                   f"backend URL {url!r}")
    if parts.scheme == "memory":
        return MemoryBackend(url, claim=claim_check_from(blobs, threshold, where=f"backend URL {url!r}"), retry=retry)
    if parts.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////abs/path.db, as SQLAlchemy spells them
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path:
            raise ConfigError(
                f"backend URL {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        claim = claim_check_from(blobs, threshold, default=default_blobs(path), where=f"backend URL {url!r}")
        schema_dir = env.get(settings.SCHEMA_DIR.name, options.get("schema_dir")) or None
        return SqliteBackend(url, path, claim, retry, claim_seconds(options.get("claim_seconds"), url), schema_dir)
    if parts.scheme == "kafka":
        try:
            from pipeteer.queues.kafka import KafkaBackend
        except ImportError as e:
            raise ConfigError(
                f"backend URL {url!r} needs the Kafka extra: pip install 'pipeteer[kafka]' ({e})"
            ) from e
        return KafkaBackend.from_url(url, workflow_name=workflow_name, env=env, plan=plan)
    raise ConfigError(
        f"unknown backend URL {url!r}: use memory://, sqlite:///path/queues.db or kafka://host:port "
        f"(query options: {dict(parse_qsl(parts.query)) or 'none'})"
    )
