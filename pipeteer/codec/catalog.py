"""Writer schemas every process can find: the catalog each backend publishes to and readers look up.

A record carries only the fingerprint of the schema it was written with (single-object encoding).
While a workflow is upgraded stage by stage, a process of version 1 meets records that a process of
version 2 wrote, and the other way round: neither has the other's classes. So every process
*publishes* each schema it writes with, in a place of the backend every reader of that backend
finds, before it writes a record of it:

- SQLite: a table of the database file itself (`SqliteCatalog` in `pipeteer.queues.sqlite.catalog`), written
  before the first row of that schema: a reader that sees the row sees the schema;
- Kafka: a compacted topic of the workflow (`pipeteer.queues.kafka.schemas`), acknowledged by the
  brokers before the first record of that schema is produced; with a schema registry configured,
  the registry (records then carry its schema ids);
- `PIPETEER_SCHEMA_DIR`, on every backend: `.avsc` files an operator keeps, registered with the
  codecs when the queues are made (`make_codec`).

A codec that meets an unknown fingerprint asks every catalog of the process (`catalogs.find`); a
schema found is resolved against the reader's own by Avro's rules (defaults filled in, new fields
ignored). What still cannot be read raises `UnreadableRecord`, and the backends *hold* such a
record (pending, listed by id, reported) instead of dropping or dead-lettering it.

Before a process serves, `check_release` compares its types with what the catalog holds, so that
an incompatible release is refused before anything runs:

>>> from dataclasses import dataclass
>>> from pipeteer.codec import codec_for
>>> @dataclass
... class Mid:
...     n: int
>>> catalog = MemoryCatalog()
>>> check_release(reads=[codec_for(Mid)], writes=[codec_for(Mid)], catalog=catalog, where="demo")
[]
>>> [p.name.rsplit(".", 1)[-1] for p in catalog.published()]
['Mid']
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeteer.codec.schema import Schema, canonical_form, fingerprint, full_name
from pipeteer.errors import SchemaError

if TYPE_CHECKING:
    from pipeteer.codec.codec import Codec

log = logging.getLogger("pipeteer.codec")


@dataclass(frozen=True)
class Published:
    """A writer schema in a catalog, and when it was last published (wall clock)."""

    fingerprint: bytes
    schema: Schema
    at: float

    @property
    def name(self) -> str:
        """The schema's full name (its canonical form for unnamed schemas)."""
        return full_name(self.schema) or canonical_form(self.schema)


class SchemaCatalog(ABC):
    """Where a backend's processes publish the schemas they write with, and find those of others."""

    where: str
    """Where the catalog lives, in words (`the schemas table of /data/queues.db`)."""

    @abstractmethod
    def publish(self, schemas: Sequence[Schema]) -> None:
        """Make `schemas` findable by every reader of the backend before this returns (idempotent;
        publishing a schema again makes it the latest of its name)."""

    @abstractmethod
    def published(self) -> list[Published]:
        """Every schema published so far, as the backend holds them now, the latest last."""

    def lookup(self, fp: bytes) -> Schema | None:
        """The schema with fingerprint `fp`, if it was published (looked up in the backend now)."""
        for p in self.published():
            if p.fingerprint == fp:
                return p.schema
        return None

    def close(self) -> None:  # noqa: B027 (nothing to release by default)
        """Release what the catalog holds (clients, connections)."""


class MemoryCatalog(SchemaCatalog):
    """A catalog in this process's memory (the memory backend's, and tests')."""

    def __init__(self) -> None:
        self.where = "this process's memory"
        self._by_fp: dict[bytes, Published] = {}
        self._lock = threading.Lock()

    def publish(self, schemas: Sequence[Schema]) -> None:
        now = time.time()
        with self._lock:
            for schema in schemas:
                self._remember(Published(fingerprint(schema), schema, now))

    def _remember(self, p: Published) -> None:
        """Keep `p` as the latest of its fingerprint (caller holds the lock)."""
        self._by_fp.pop(p.fingerprint, None)
        self._by_fp[p.fingerprint] = p

    def published(self) -> list[Published]:
        with self._lock:
            return sorted(self._by_fp.values(), key=lambda p: p.at)

    def lookup(self, fp: bytes) -> Schema | None:
        p = self._by_fp.get(fp)
        return None if p is None else p.schema


class Catalogs:
    """The catalogs of this process, which codecs ask for writer schemas they do not know.

    Backends attach theirs when made and detach them when closed; they are held weakly, so a
    backend dropped without `close()` does not keep its catalog alive. Fingerprints name schemas
    by their content, so a schema found in any catalog is the right one for its fingerprint.
    """

    def __init__(self) -> None:
        self._catalogs: list[weakref.ref[SchemaCatalog]] = []
        self._lock = threading.Lock()

    def attach(self, catalog: SchemaCatalog) -> None:
        with self._lock:
            self._catalogs = [r for r in self._catalogs if r() is not None and r() is not catalog]
            self._catalogs.append(weakref.ref(catalog))

    def detach(self, catalog: SchemaCatalog) -> None:
        with self._lock:
            self._catalogs = [r for r in self._catalogs if r() is not None and r() is not catalog]

    def find(self, fp: bytes) -> Schema | None:
        """The schema with fingerprint `fp` from the first catalog that has it (None: none has)."""
        for ref in list(self._catalogs):
            catalog = ref()
            if catalog is None:
                continue
            try:
                schema = catalog.lookup(fp)
            except Exception as exc:  # a catalog that cannot answer now (broker away, busy file): the next one
                log.warning("cannot look up writer schema %s in %s: %s", fp.hex(), catalog.where, exc)
                continue
            if schema is not None:
                return schema
        return None


catalogs = Catalogs()


def check_release(
    *, reads: Iterable[Codec[Any]], writes: Iterable[Codec[Any]], catalog: SchemaCatalog, where: str
) -> list[str]:
    """Check this release's types against the versions published in `catalog`, then publish the
    schemas it writes with. Raises `SchemaError` (and publishes nothing) when the release cannot run
    beside what is there; returns notes about older versions whose records, if any are left, will
    be held rather than read.

    - Each type read: every published version of it becomes a writer schema of its codec. The
      *latest* published version must be readable (the records being written now); an older one
      that is not is noted (its records are held, never lost).
    - Each type written: the new schema must be compatible one way or the other with the latest
      published version (old readers read it, or it reads what they wrote): otherwise no order of
      rolling the stages works, and the release is refused.
    """
    from pipeteer.codec.compat import reader_problems  # avro is imported only when evolution is used

    published = catalog.published()
    latest: dict[str, Published] = {}
    for p in published:  # (the latest last)
        latest[p.name] = p
    notes: list[str] = []
    problems: list[str] = []
    for codec in _unique(reads):
        names = {codec.name, *(_aliases(codec.schema))}
        for p in published:
            # (the same fingerprint may hide another decimal scale or time unit: logical types are not
            # in Avro's canonical form, so the schemas themselves are compared)
            if p.name not in names or p.schema == codec.schema:
                continue
            try:
                codec.add_writer_schema(p.schema)
            except SchemaError as exc:
                newest = max((latest[n] for n in names if n in latest), key=lambda q: q.at, default=None)
                if newest is not None and newest.fingerprint == p.fingerprint:
                    problems.append(
                        f"{where}: reads {codec.describe()}, but the version of {p.name} written now "
                        f"(fingerprint {p.fingerprint.hex()}, published in {catalog.where}) cannot be read "
                        f"by it: {exc}"
                    )
                else:
                    notes.append(
                        f"records of the older version {p.fingerprint.hex()} of {p.name}, if any are left, "
                        f"cannot be read by {codec.describe()} and will be held: {exc}"
                    )
    for codec in _unique(writes):
        now = latest.get(codec.name)
        if now is None or now.schema == codec.schema:
            continue
        backward = reader_problems(reader=codec.schema, writer=now.schema)
        forward = reader_problems(reader=now.schema, writer=codec.schema)
        if backward and forward:
            problems.append(
                f"{where}: writes {codec.describe()}, which is incompatible both ways with the version "
                f"written now (fingerprint {now.fingerprint.hex()}, in {catalog.where}): its readers cannot "
                f"read the new records ({'; '.join(forward)}), and the new readers cannot read the old "
                f"({'; '.join(backward)}). Make the change compatible (a new field needs a default; "
                "`pipeteer schemas check` says which), or give the state a new name"
            )
    if problems:
        raise SchemaError(
            f"release refused for {len(problems)} reason(s), before anything ran:\n  - " + "\n  - ".join(problems)
        )
    catalog.publish([c.schema for c in _unique(writes)])
    for note in notes:
        log.warning("%s", note)
    return notes


def _unique(codecs: Iterable[Codec[Any]]) -> list[Codec[Any]]:
    seen: dict[bytes, Codec[Any]] = {}
    for c in codecs:
        seen.setdefault(c.fingerprint, c)
    return list(seen.values())


def _aliases(schema: Schema) -> list[str]:
    if not isinstance(schema, dict):
        return []
    namespace = schema.get("namespace")
    return [a if "." in a or not namespace else f"{namespace}.{a}" for a in schema.get("aliases", ())]
