"""A Kafka stage's dead letters: listing them and putting them back (`pipeteer dlq list|replay`).

Dead letters are the records a stage could not decode, or whose processing kept failing after
its retries; each carries headers naming the error, the stage and where it came from (see
`engine.StageEngine.dead_letter`). The dead-letter topic is append-only, so "replayed" is
tracked by a consumer group of its own (`<stage group>.dlq-replay`): listing shows the dead
letters past its committed offsets, and replaying all of them produces their original bytes
back to their original topic in ONE transaction with that group's offsets, so a replay that
is run twice (or crashes half-way) injects nothing twice.
"""

from __future__ import annotations

import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from pipeteer.queues.base import error_name
from pipeteer.queues.kafka.changelog import consume_to_end, watermarks
from pipeteer.queues.kafka.config import KafkaSettings
from pipeteer.queues.kafka.pending import Record


def dead_letter_record(
    topic: str,
    id: str,
    raw: bytes | None,
    error: BaseException,
    stage: str,
    source_topic: str,
    partition: int,
    offset: int,
    attempts: int,
) -> Record:
    """A dead letter: the input record's bytes, with headers naming the error, the stage and the source."""
    headers = (
        ("pipeteer.error.class", error_name(error).encode()),
        ("pipeteer.error.message", str(error).encode(errors="replace")),
        ("pipeteer.error.stacktrace", "".join(traceback.format_exception(error)).encode(errors="replace")),
        ("pipeteer.stage", stage.encode()),
        ("pipeteer.source.topic", source_topic.encode()),
        ("pipeteer.source.partition", str(partition).encode()),
        ("pipeteer.source.offset", str(offset).encode()),
        ("pipeteer.attempts", str(attempts).encode()),
        ("pipeteer.failed_at", repr(time.time()).encode()),
    )
    return Record(topic, id, raw, headers=headers, source=partition)


@dataclass(frozen=True)
class KafkaDeadLetter:
    """One dead-lettered record and what its headers say."""

    id: str
    stage: str
    error_class: str
    error_message: str
    stacktrace: str
    source_topic: str
    source_partition: int
    source_offset: int
    attempts: int
    failed_at: float
    partition: int
    offset: int
    value: bytes

    @classmethod
    def from_message(cls, m: Any) -> KafkaDeadLetter:
        h = {k: v.decode(errors="replace") for k, v in (m.headers() or ())}
        return cls(
            id=(m.key() or b"").decode(errors="replace"),
            stage=h.get("pipeteer.stage", ""),
            error_class=h.get("pipeteer.error.class", ""),
            error_message=h.get("pipeteer.error.message", ""),
            stacktrace=h.get("pipeteer.error.stacktrace", ""),
            source_topic=h.get("pipeteer.source.topic", ""),
            source_partition=int(h.get("pipeteer.source.partition", "-1")),
            source_offset=int(h.get("pipeteer.source.offset", "-1")),
            attempts=int(h.get("pipeteer.attempts", "0")),
            failed_at=float(h.get("pipeteer.failed_at", "0") or 0),
            partition=m.partition(),
            offset=m.offset(),
            value=m.value() or b"",
        )


class DeadLetterTopic:
    """The dead-letter topic of one stage, and the consumer group that tracks what was replayed."""

    def __init__(self, settings: KafkaSettings, topic: str, replay_group: str) -> None:
        self.settings, self.topic, self.replay_group = settings, topic, replay_group

    def _replayed_up_to(self) -> dict[int, int]:
        c = Consumer(self.settings.connection.client_config("consumer", **{"group.id": self.replay_group}))
        try:
            meta = c.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is None or meta.error is not None:
                return {}
            committed = c.committed([TopicPartition(self.topic, p) for p in meta.partitions], 10)
            return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
        finally:
            c.close()

    def _read(self, start: dict[int, int]) -> list[Any]:
        """Committed records from `start` offsets (default: the beginning) to the end."""
        c = Consumer(
            self.settings.connection.client_config(
                "consumer",
                **{
                    "group.id": f"pipeteer-dlq-{uuid.uuid4().hex[:8]}",
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                    "enable.auto.commit": False,
                },
            )
        )
        try:
            meta = c.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is None or meta.error is not None:
                return []
            ends: dict[int, int] = {}
            for p in meta.partitions:
                low, high = watermarks(c, self.topic, p, 10)
                if high > max(start.get(p, low), low):
                    ends[p] = high
            out: list[Any] = []
            if not ends:
                return out
            c.assign([TopicPartition(self.topic, p, start.get(p, OFFSET_BEGINNING)) for p in ends])
            out.extend(consume_to_end(c, ends, time.monotonic() + 60))
            return out
        finally:
            c.close()

    def pending(self) -> list[KafkaDeadLetter]:
        """The dead letters not replayed yet, oldest first per partition."""
        return [KafkaDeadLetter.from_message(m) for m in self._read(self._replayed_up_to())]

    def replay(self, ids: list[str] | None = None) -> list[KafkaDeadLetter]:
        """Produce dead letters back to their original topics; returns the ones replayed.

        `ids=None`: every one not replayed yet, exactly once (the replay group's offsets are
        committed in the same transaction). `ids`: the latest unreplayed dead letter of each id.
        """
        start = self._replayed_up_to()
        messages = self._read(start)
        letters = [KafkaDeadLetter.from_message(m) for m in messages]
        if ids is not None:
            latest = {d.id: d for d in letters if d.id in set(ids)}
            letters = list(latest.values())
        if not letters:
            return []
        producer = Producer(
            self.settings.connection.client_config(
                "producer",
                **{"transactional.id": f"{self.replay_group}.{uuid.uuid4().hex[:8]}", "partitioner": "murmur2_random"},
            )
        )
        producer.init_transactions(30)
        producer.begin_transaction()
        for d in letters:
            producer.produce(d.source_topic, d.value, d.id.encode())
        if ids is None:
            offsets: dict[int, int] = {}
            for m in messages:
                offsets[m.partition()] = max(offsets.get(m.partition(), 0), m.offset() + 1)
            group = Consumer(self.settings.connection.client_config("consumer", **{"group.id": self.replay_group}))
            try:
                producer.send_offsets_to_transaction(
                    [TopicPartition(self.topic, p, o) for p, o in offsets.items()], group.consumer_group_metadata(), 30
                )
                producer.commit_transaction(60)
            finally:
                group.close()
        else:
            producer.commit_transaction(60)
        return letters
