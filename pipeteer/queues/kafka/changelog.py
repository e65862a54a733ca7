"""Reading a stage's changelog back into its pending table, and the consumers a stage uses."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pipeteer.codec import kafka_source
from pipeteer.errors import DecodeError, QueueError, UnreadableRecord
from pipeteer.queues.kafka.config import KafkaSettings
from pipeteer.queues.kafka.faults import Fault, classify_exception
from pipeteer.queues.kafka.pending import Entry

log = logging.getLogger("pipeteer.kafka")

RESTORE_TIMEOUT = 120.0
BATCH = 500

PREFETCH = 100_000
"""Records per partition the stage consumer's client keeps fetched ahead (librdkafka's
`queued.min.messages`; a property of that name overrides this), and at most `max_pending_bytes` of
records per partition (`queued.max.messages.kbytes`: 64 MiB by default, librdkafka's own default;
this comes on top of the pending table's budget, per partition, so a stage instance that reads many
partitions of large records may want to lower it).

Once a partition's queue is over either bound, librdkafka fetches nothing more for it for
`fetch.queue.backoff.ms`, a second by default. The prefetch must therefore hold more than a second
of the stage's work: at 2,000 records and 16 MiB per partition (as before) a single 1 MiB fetch
response put a partition over the bound, and a stage that works through 50,000 records/s waited
most of each second for input (0.11 × a hand-written loop at 200 B records, 0.38 × at 10 KB).
A shorter `fetch.queue.backoff.ms` (10 ms) with the shallow prefetch was as fast in one run; the
client's own defaults are kept instead, at the price of memory (the bound above, per partition)."""


def stage_consumer(settings: KafkaSettings, group: str, on_error: Callable[[KafkaError], None], *,
                   stats: Callable[[str], None] | None = None, stats_interval_ms: int = 0) -> Any:
    """The stage's group consumer: read_committed, offsets committed only through transactions;
    a static member (KIP-345) when asked; its statistics to `stats` every `stats_interval_ms`."""
    conf = stage_consumer_config(settings, group, on_error)
    if stats is not None and stats_interval_ms > 0:
        conf.setdefault("statistics.interval.ms", stats_interval_ms)
        conf["stats_cb"] = stats
    return Consumer(conf)


def stage_consumer_config(settings: KafkaSettings, group: str, on_error: Callable[[KafkaError], None]) -> dict[str, Any]:
    member = {"group.instance.id": settings.instance} if settings.static_membership else {}
    conf = settings.connection.client_config(
        "consumer",
        **member,
        **{
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "error_cb": on_error,
        },
    )
    conf.setdefault("queued.min.messages", PREFETCH)  # a user's property of that name wins
    conf.setdefault("queued.max.messages.kbytes", max(1024, settings.transactions.max_pending_bytes >> 10))
    return conf


def restore_consumer(settings: KafkaSettings, group: str) -> Any:
    """A consumer assigned (not subscribed) to changelog partitions, to restore them."""
    return Consumer(
        settings.connection.client_config(
            "consumer",
            **{
                "group.id": f"{group}.restore",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
        )
    )



def watermarks(consumer: Any, topic: str, partition: int, timeout: float = 30.0) -> tuple[int, int]:
    """The partition's low and high watermarks, asked again while its leader is moving or not elected yet.

    A topic created a moment ago, or a partition whose leader just changed, answers "not leader"
    for a while: a transient state of any Kafka cluster, not a failure of the caller.
    """
    low, high = _patiently(lambda wait: consumer.get_watermark_offsets(TopicPartition(topic, partition), wait, False),
                           timeout, refresh=lambda: consumer.list_topics(topic, timeout=ASK_TRY))
    return int(low), int(high)


def committed(consumer: Any, topic: str, partitions: list[int], timeout: float = 30.0) -> list[Any]:
    """The consumer group's committed offsets of `partitions`, asked again while the group's
    coordinator is moving or loading (a group never used yet answers "not coordinator" at first)."""
    result: list[Any] = _patiently(lambda wait: consumer.committed([TopicPartition(topic, p) for p in partitions], wait),
                                   timeout)
    return result


ASK_TRY = 2.0
"""Seconds one request for offsets may take before it is asked again. A request to a partition's leader
that just died waits out its whole timeout (the client does not look for the new leader meanwhile):
with one 30 s try, a stage restoring its pending items after a broker kill stood still for 30 s where
the cluster needed 9 s to elect a new leader."""


def _patiently(call: Any, timeout: float, refresh: Callable[[], Any] | None = None) -> Any:
    """`call(wait)` in tries of `ASK_TRY` seconds until it answers, retried while Kafka says the state is
    transient (`faults.Fault.RETRY`: a timed-out try is one), up to `timeout`; `refresh()` before each
    retry. (A watermark request goes to the leader the client has in its metadata, and a failed one does
    not make it look again: after a broker kill, the restorer kept asking the dead leader for 30 s while
    the cluster had elected another in 10. Asking for the topic's metadata refreshes it.)"""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call(max(min(ASK_TRY, deadline - time.monotonic()), 0.5))
        except KafkaException as e:
            # A cluster passing through a state (a leader or coordinator moving or loading, a broker away:
            # `faults.classify`) is asked again; anything else is the caller's to handle.
            if classify_exception(e, "restorer") is not Fault.RETRY or time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
            if refresh is not None:
                with contextlib.suppress(KafkaException):
                    refresh()


def read_changelog(
    restorer: Any, changelog: str, partitions: list[int], codec: Any, stage: str
) -> dict[int, dict[str, Entry]]:
    """The live pending items of changelog `partitions`, read (read_committed) to their end.

    The end is the last stable offset: a transaction still open on the changelog (a killed
    instance's, until it is fenced or times out) is waited for, never read past.
    """
    out: dict[int, dict[str, Entry]] = {p: {} for p in partitions}
    ends: dict[int, int] = {}
    for p in partitions:
        low, high = watermarks(restorer, changelog, p)
        if high > low:
            ends[p] = high
    if not ends:
        return out
    restorer.assign([TopicPartition(changelog, p, OFFSET_BEGINNING) for p in ends])
    try:
        for m in consume_to_end(restorer, ends, time.monotonic() + RESTORE_TIMEOUT):
            p = m.partition()
            if p not in ends:
                continue
            id, raw = m.key().decode(), m.value()
            out[p].pop(id, None)
            if raw is not None:
                headers = dict(m.headers() or ())
                offset = int(headers.get("pipeteer.offset", b"-1"))
                consumed_at = float(headers.get("pipeteer.consumed_at", b"0") or 0) or time.time()
                try:
                    out[p][id] = Entry(id, codec.decode(raw, source=kafka_source(changelog, p, m.offset())),
                                       raw, p, offset, consumed_at)
                except DecodeError as e:
                    # Another version's pending item (or bytes no version reads): kept, held and listed by
                    # id, never dropped; a version that can read it serves it (`Entry.held`).
                    held = e if isinstance(e, UnreadableRecord) else UnreadableRecord(
                        str(e), writer_fingerprint=raw[2:10].hex() if raw[:2] == b"\xc3\x01" else "",
                        reason=str(e.found or e), source=e.source)
                    out[p][id] = Entry(id, None, raw, p, offset, consumed_at, held=held)
        if ends:
            raise QueueError(
                f"stage {stage!r}: restoring {changelog} partitions {sorted(ends)} "
                f"took over {RESTORE_TIMEOUT:.0f}s; is the broker reachable?"
            )
    finally:
        restorer.unassign()
    unread = sum(1 for entries in out.values() for e in entries.values() if e.held is not None)
    if unread:
        log.warning("stage %r: %d pending item(s) restored from %s cannot be read by this version: held "
                    "(kept and listed), served once a version that reads them takes them", stage, unread, changelog)
    return out


def consume_to_end(consumer: Any, ends: dict[int, int], deadline: float) -> Iterator[Any]:
    """The data records of the partitions in `ends` (partition -> end offset), as `consumer`
    (assigned to them, `enable.partition.eof` on) reads them, until every partition reached its
    end offset or end of partition, or `deadline` (monotonic) passed; a partition is taken out of
    `ends` when done, so what is left in it afterwards did not finish. Records of a partition
    that is done may still come in the same batch: callers that only want the snapshot check `ends`.
    """
    while ends and time.monotonic() < deadline:
        batch: list[Any] = consumer.consume(BATCH, 0.5)
        for m in batch:
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    ends.pop(m.partition(), None)
                continue
            yield m
            if m.offset() + 1 >= ends.get(m.partition(), 0):
                ends.pop(m.partition(), None)
