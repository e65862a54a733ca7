"""The blob keys a Kafka workflow still references, for `pipeteer blobs gc` (see `pipeteer.runtime.blobs`).

What is still referenced: the records of each queue topic from its reading stage's committed
offset on (not consumed yet, or consumed in a transaction not committed yet), the live records of
each stage's changelog (pending items, the latest record per id; a tombstone ends one), and every
record of the dead-letter topics. The committed offsets are read *before* any topic is scanned,
and each topic is scanned to an end read after that, so an item that moves meanwhile is found in
its newer place. Records are read uncommitted: an open transaction's records count too.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from pipeteer.codec.claimcheck import keys_in
from pipeteer.errors import QueueError

if TYPE_CHECKING:
    from pipeteer.queues.kafka.backend import KafkaBackend

TIMEOUT = 30.0


def referenced_kafka(backend: KafkaBackend) -> set[str]:
    names = backend.names
    conf = backend.settings.connection.client_config
    starts: dict[TopicPartition, int] = {}  # where each scan starts (OFFSET_BEGINNING: -2)
    stages: set[tuple[str, ...]] = set()
    probe = Consumer(conf("consumer", **{"group.id": f"{names.group(('blobs-gc',))}.{uuid.uuid4().hex[:8]}"}))
    try:
        topics = probe.list_topics(timeout=TIMEOUT).topics

        def partitions(topic: str) -> list[int]:
            meta = topics.get(topic)
            return [] if meta is None or meta.error is not None else sorted(meta.partitions)

        for path, q in backend.queues.items():
            stage = backend.reader_of(path)
            stages.add(stage)
            group = Consumer(conf("consumer", **{"group.id": names.group(stage), "enable.auto.commit": False}))
            try:
                tps = [TopicPartition(q.topic, p) for p in partitions(q.topic)]
                for tp in group.committed(tps, timeout=TIMEOUT) if tps else []:
                    starts[TopicPartition(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else -2
            finally:
                group.close()
        whole = [names.changelog(s) for s in stages] + [names.dead_letters(s) for s in stages]
        for topic in whole:
            for p in partitions(topic):
                starts[TopicPartition(topic, p)] = -2
        changelogs = {names.changelog(s) for s in stages}
        return _scan(probe, starts, changelogs)
    finally:
        probe.close()


def _scan(consumer: Any, starts: dict[TopicPartition, int], changelogs: set[str]) -> set[str]:
    ends: dict[tuple[str, int], int] = {}
    assignment = []
    for tp, start in starts.items():
        low, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT)
        first = low if start < 0 else max(start, low)
        if first < high:
            ends[(tp.topic, tp.partition)] = high
            assignment.append(TopicPartition(tp.topic, tp.partition, first))
    found: set[str] = set()
    live: dict[tuple[str, bytes], set[str]] = {}  # changelog: the latest record per id
    if not assignment:
        return found
    consumer.assign(assignment)
    deadline = time.monotonic() + 600
    while ends:
        if time.monotonic() > deadline:
            raise QueueError(f"blobs gc: reading {sorted(t for t, _ in ends)} did not finish in 10 minutes")
        for m in consumer.consume(1000, 1.0):
            if m.error() is not None:
                if m.error().code() != KafkaError._PARTITION_EOF:
                    raise QueueError(f"blobs gc: reading {m.topic()}/{m.partition()} failed: {m.error()}")
                continue
            key = (m.topic(), m.partition())
            if m.topic() in changelogs:
                live[(m.topic(), m.key() or b"")] = keys_in(m.value())
            else:
                found |= keys_in(m.value())
            if key in ends and m.offset() + 1 >= ends[key]:
                del ends[key]
        for tp in consumer.position([TopicPartition(t, p) for t, p in ends]):
            if tp.offset >= 0 and tp.offset >= ends[(tp.topic, tp.partition)]:
                del ends[(tp.topic, tp.partition)]  # ends in transaction markers
    for keys in live.values():
        found |= keys
    return found
