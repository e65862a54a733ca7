"""The schema catalog of a workflow on Kafka: a compacted topic, keyed by schema fingerprint.

Every process publishes each schema it writes with before producing the first record of it: the
record `fingerprint (hex) -> {"schema": ..., "at": seconds}` is acknowledged by the brokers
(acks=all) before `publish` returns. So when a reader meets a record whose fingerprint it does not
know, reading the topic to its end finds the schema (the catalog does that at most once per
`REFRESH_SECONDS` for fingerprints it lacks; known ones cost nothing). Publishing again updates `at`,
which makes the schema the latest of its name (`check_release` compares a release with the latest).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from pipeteer.codec.catalog import MemoryCatalog, Published, SchemaCatalog
from pipeteer.codec.registry import ConfluentCodec
from pipeteer.codec.schema import Schema, fingerprint
from pipeteer.errors import QueueError
from pipeteer.queues.kafka.changelog import consume_to_end, watermarks
from pipeteer.queues.kafka.config import KafkaSettings

log = logging.getLogger("pipeteer.kafka")

REFRESH_SECONDS = 0.5
"""A fingerprint the catalog lacks makes it read the topic again at most this often (a reader that
keeps meeting an unknown writer does not read the topic for every record)."""
PUBLISH_TIMEOUT = 30.0
READ_TIMEOUT = 30.0


class KafkaCatalog(MemoryCatalog):
    """The `<prefix>.<workflow>._schemas` topic (`ensure` creates it when missing, as the backend's
    other topics are), and what this process has read of it (the `MemoryCatalog` it extends)."""

    def __init__(self, settings: KafkaSettings, topic: str, ensure: Callable[[], None]) -> None:
        super().__init__()
        self.settings = settings
        self.topic = topic
        self.where = f"the schemas topic {topic}"
        self._ensure = ensure
        self._consumer: Any = None
        self._positions: dict[int, int] = {}
        self._refreshed = 0.0

    def publish(self, schemas: Sequence[Schema]) -> None:
        if not schemas:
            return
        self._ensure()
        producer = Producer(self.settings.connection.client_config(
            "producer", **{"enable.idempotence": True, "acks": "all", "linger.ms": 0}))
        errors: list[str] = []

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        now = time.time()
        for schema in schemas:
            value = json.dumps({"schema": schema, "at": now}, sort_keys=True).encode()
            producer.produce(self.topic, value, fingerprint(schema).hex().encode(), on_delivery=delivered)
        left = producer.flush(PUBLISH_TIMEOUT)
        if left or errors:
            raise QueueError(
                f"cannot publish {len(schemas)} schema(s) to {self.topic}: "
                + ("; ".join(errors) if errors else f"{left} not acknowledged within {PUBLISH_TIMEOUT:.0f}s")
            )
        with self._lock:
            for schema in schemas:
                self._remember(Published(fingerprint(schema), schema, now))

    def published(self) -> list[Published]:
        with self._lock:
            self._refresh()
            return sorted(self._by_fp.values(), key=lambda p: p.at)

    def lookup(self, fp: bytes) -> Schema | None:
        p = self._by_fp.get(fp)
        if p is None and time.monotonic() - self._refreshed >= REFRESH_SECONDS:
            with self._lock:
                if fp not in self._by_fp and time.monotonic() - self._refreshed >= REFRESH_SECONDS:
                    self._refresh()
            p = self._by_fp.get(fp)
        return None if p is None else p.schema

    def _refresh(self) -> None:
        """Read what was published since the last look, to the topic's end (caller holds the lock)."""
        self._refreshed = time.monotonic()
        if self._consumer is None:
            self._ensure()
            self._consumer = Consumer(self.settings.connection.client_config("consumer", **{
                "group.id": f"{self.topic}.reader", "enable.auto.commit": False,
                "enable.partition.eof": True, "auto.offset.reset": "earliest",
            }))
            meta = self._consumer.list_topics(self.topic, timeout=READ_TIMEOUT).topics.get(self.topic)
            if meta is None or meta.error is not None:
                raise QueueError(f"cannot read {self.topic}: {None if meta is None else meta.error}")
            self._positions = dict.fromkeys(meta.partitions, 0)
            self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._positions])
        ends = {}
        for p, position in self._positions.items():
            high = watermarks(self._consumer, self.topic, p)[1]
            if high > position:
                ends[p] = high
        for m in consume_to_end(self._consumer, ends, time.monotonic() + READ_TIMEOUT):
            self._positions[m.partition()] = m.offset() + 1
            if m.value() is None or m.key() is None:
                continue
            try:
                entry = json.loads(m.value())
                schema, at = entry["schema"], float(entry["at"])
                fp = fingerprint(schema)
            except (ValueError, KeyError, TypeError) as exc:  # not ours: said, never fatal for the reader
                log.warning("%s: record at partition %d offset %d is not a schema: %s",
                            self.topic, m.partition(), m.offset(), exc)
                continue
            self._remember(Published(fp, schema, at))
        if ends:
            raise QueueError(f"reading {self.topic} to its end took over {READ_TIMEOUT:.0f}s; is the broker reachable?")

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


class RegistryCatalog(SchemaCatalog):
    """The schema registry as the workflow's catalog, when one is configured: the registry resolves
    writer schemas by the ids records carry (`pipeteer.codec.registry`), so `lookup` has nothing to add;
    `published` lists the registered versions of the subjects of this process's queues (the latest
    version of a subject last), and `publish` registers a schema under the subject of each queue of
    its type (the registry refuses what breaks its compatibility setting: a `SchemaError`)."""

    def __init__(self, codecs: Callable[[], Sequence[ConfluentCodec[Any]]]) -> None:
        self._codecs = codecs
        self.where = "the schema registry"

    def publish(self, schemas: Sequence[Schema]) -> None:
        wanted = {fingerprint(s) for s in schemas}
        for codec in self._codecs():
            if codec.codec.fingerprint in wanted:
                codec.register()

    def published(self) -> list[Published]:
        out: list[Published] = []
        for codec in self._codecs():
            try:
                versions = codec.client.get_versions(codec.subject)
            except Exception as exc:  # a subject nothing was registered under yet
                if "404" in str(exc) or "not found" in str(exc).lower():
                    continue
                raise QueueError(f"cannot list the versions of subject {codec.subject!r} in the registry: {exc}") from exc
            for version in sorted(versions):
                registered = codec.client.get_version(codec.subject, version)
                schema = json.loads(registered.schema.schema_str or "null")
                out.append(Published(fingerprint(schema), schema, float(version)))
        return sorted(out, key=lambda p: p.at)

    def lookup(self, fp: bytes) -> Schema | None:
        return None
