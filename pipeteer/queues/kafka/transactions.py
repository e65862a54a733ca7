"""A stage's transactional producer and its open transaction: producing, committing, aborting.

The stage engine's thread is the only user (the client is synchronous). One transaction is always
open once `open()` has run: a commit or an abort begins the next one at once, so records can be
produced into it at any time. Whether a failed commit retries, aborts or recreates the producer
follows the client's error classes (`retriable`, `txn_requires_abort`, `fatal`); the engine then
rewinds its input (see `engine.StageEngine._recover`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from pipeteer.queues.kafka.config import KafkaSettings
from pipeteer.queues.kafka.faults import Fault, classify_exception
from pipeteer.queues.kafka.pending import Record

log = logging.getLogger("pipeteer.kafka")

SLOW_COMMIT = 2.0
"""A commit (or the offsets sent with it) slower than this many seconds is logged."""
RETRY_BACKOFF_MS = 10
"""The transactional producer's first retry backoff (librdkafka's `retry.backoff.ms`, 100 by default;
it doubles up to `retry.backoff.max.ms` on each further retry). Right after a commit, the
transaction coordinator answers the next transaction's first AddPartitionsToTxn / AddOffsetsToTxn
with CONCURRENT_TRANSACTIONS until the previous commit's markers are written, which takes
milliseconds: at the default every other commit waited 100 ms for it (the Java client retries
the first AddPartitionsToTxn of a transaction after 20 ms for the same reason). A client property
`retry.backoff.ms` of the user's wins."""

CALL_TRY = 10.0
"""Seconds one try of `init_transactions` may take before it is tried again (`StageProducer._patiently`).
A commit's tries (`send_offsets_to_transaction`, `commit_transaction`) last the transaction timeout and
5 s more instead: records sent to a leader that died are retried to the new one or time out within the
transaction timeout, and one try then answers either way (committed, or abortable). With 10 s tries at
the 10 s default timeout, the first try ended just before the records' fate was known and the second
waited until the coordinator had aborted the transaction and fenced the producer: 20 s where a
hand-written loop took 13 (`bench/faults.md`)."""

COMMIT_TRIES = 2
"""Tries of a commit's calls before the producer is replaced (`StageEngine._on_transaction_error`): a
coordinator that stalled (SIGSTOP, a long pause) keeps the client's requests waiting on it even once
Kafka has moved its role elsewhere, and a new producer finds the new coordinator at once (fencing the
old one, which aborts its transaction)."""

UNACKED_BYTES = 4 << 20
"""What the transactional producer holds at most of records not yet acknowledged by the brokers
(librdkafka's `queue.buffering.max.kbytes`; its default is 1 GiB). A commit first waits for every
record of its transaction to be acknowledged, so this bounds how long a commit takes once the stage
stops: at its default, a 10 KB stage ran up to 25 MB ahead of a local broker, and its commits then
took up to 200 ms; at 4 MiB, tens of ms. The stage waits when it is reached (`StageEngine.finish`).
A client property `queue.buffering.max.kbytes` of the user's wins, as long as the largest record
(`message.max.bytes`) fits: a record larger than the bound could never be produced."""


class StageProducer:
    """The transactional producer of one stage instance (`transactional_id`), with its open transaction."""

    def __init__(
        self, settings: KafkaSettings, transactional_id: str, stage_name: str, on_error: Callable[[KafkaError], None]
    ) -> None:
        self.settings = settings
        self.transactional_id = transactional_id
        self.stage_name = stage_name
        self.on_error = on_error
        self.producer: Any = None
        self.produced = False
        """Records were produced in the open transaction."""
        self.bytes = 0
        """Bytes of the values produced in the open transaction."""

    def open(self) -> None:
        """Make the producer (fencing any earlier one with this transactional id) and begin a transaction, once."""
        if self.producer is None:
            self.producer = self._make()
            self._begin()

    def _make(self) -> Any:
        tx = self.settings.transactions
        props = self.settings.connection.properties
        unacked_kb = max(
            int(props.get("queue.buffering.max.kbytes", UNACKED_BYTES >> 10)),
            self.settings.connection.record_limit // 1024 + 1,
        )
        producer = Producer(
            self.settings.connection.client_config(
                "producer",
                **{
                    "transactional.id": self.transactional_id,
                    "transaction.timeout.ms": tx.timeout_ms,
                    "partitioner": "murmur2_random",
                    "linger.ms": 5,
                    "retry.backoff.ms": props.get("retry.backoff.ms", RETRY_BACKOFF_MS),
                    "queue.buffering.max.messages": 1_000_000,
                    "queue.buffering.max.kbytes": unacked_kb,
                    "error_cb": self.on_error,
                },
            )
        )
        # Fences any earlier producer with this transactional id and aborts its open transaction.
        self._patiently("init_transactions", producer.init_transactions, tx.timeout_ms / 1000 + 30)
        return producer

    def _patiently(self, what: str, call: Callable[[float], Any], budget: float, each: float = CALL_TRY,
                   tries: int = 1000) -> None:
        """`call(timeout)` in tries of `CALL_TRY` seconds while the error is a fault of the cluster that
        passes (`faults.Fault.RETRY`: a coordinator moving or loading, a broker away, a try timed out),
        up to `budget` seconds in all; librdkafka allows these calls again after such an error. One long
        call instead waited out its whole timeout on a coordinator that had moved (40 s at start-up
        with one broker of three down), then failed the stage."""
        deadline = time.monotonic() + budget
        while True:
            tries -= 1
            try:
                call(max(min(each, deadline - time.monotonic()), 1.0))
                return
            except KafkaException as e:
                if classify_exception(e, "producer") is not Fault.RETRY or time.monotonic() >= deadline or tries <= 0:
                    raise
                log.info("stage %r: %s: %s; trying again", self.stage_name, what, e.args[0])

    def _begin(self) -> None:
        self.producer.begin_transaction()
        self.produced = False
        self.bytes = 0

    def produce(self, records: Iterable[Record]) -> None:
        """Produce `records` in the open transaction (the client sends them meanwhile); waits for room
        when the client's queue is full, for as long as a commit try (the records it holds are delivered
        or time out within the transaction timeout): past that, the transaction fails (`_TIMED_OUT`)
        and the engine recovers, rather than wait for ever on a client that frees no room."""
        deadline: float | None = None
        for r in records:
            while True:
                try:
                    self._send(r)
                    break
                except BufferError:  # (the client's queue is full: wait for acknowledgements)
                    now = time.monotonic()
                    deadline = deadline or now + self._commit_try()
                    if now > deadline:
                        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no room in the producer's queue "
                                                        f"for {self._commit_try():.0f}s", txn_requires_abort=True)) from None
                    self.producer.poll(0.05)

    def offer(self, records: list[Record]) -> int:
        """Produce `records` in order while the client takes them at once; returns how many it took.

        For the event loop's thread, which must not wait: the rest (client queue full, or a client
        error) is left to the engine's thread, whose `produce` waits or whose commit fails and
        recovers."""
        for i, r in enumerate(records):
            try:
                self._send(r)
            except (BufferError, KafkaException):
                return i
        return len(records)

    def offer_one(self, topic: str, key: str, value: bytes | None) -> bool:
        """`offer` for one output record (the stage's hot path): whether the client took it."""
        try:
            self.producer.produce(topic, value, key.encode())
        except (BufferError, KafkaException):
            return False
        if value is not None:
            self.bytes += len(value)
        self.produced = True
        return True

    def _send(self, r: Record) -> None:
        produce = self.producer.produce
        key = r.key.encode()
        if r.partition is None:
            if r.headers:
                produce(r.topic, r.value, key, headers=list(r.headers))
            else:
                produce(r.topic, r.value, key)
        elif r.headers:
            produce(r.topic, r.value, key, r.partition, headers=list(r.headers))
        else:
            produce(r.topic, r.value, key, r.partition)
        if r.value is not None:
            self.bytes += len(r.value)
        self.produced = True

    def poll(self) -> None:
        """Serve the client's callbacks: its errors, and the delivery reports of acknowledged records
        (until served, they count against `UNACKED_BYTES`)."""
        self.producer.poll(0)

    def commit(self, topic: str, offsets: dict[int, int], group_metadata: Callable[[], Any]) -> float | None:
        """Commit the open transaction with the input `offsets` of `topic` (sent with the consumer's
        group metadata: EOS v2), then begin the next. Returns how long the commit took, or None when
        the transaction carried nothing (such a commit asks nothing of the brokers)."""
        if offsets:
            tps = [TopicPartition(topic, p, o) for p, o in offsets.items()]
            started = time.monotonic()
            metadata = group_metadata()
            self._patiently("send_offsets_to_transaction",
                            lambda wait: self.producer.send_offsets_to_transaction(tps, metadata, wait), 60,
                            self._commit_try(), COMMIT_TRIES)
            if time.monotonic() - started > SLOW_COMMIT:
                log.warning("stage %r: sending offsets took %.1fs", self.stage_name, time.monotonic() - started)
        if not (self.produced or offsets):
            return None
        started = time.monotonic()
        self._commit_transaction()
        took = time.monotonic() - started
        if took > SLOW_COMMIT:
            log.warning("stage %r: transaction commit took %.1fs", self.stage_name, took)
        self._begin()
        return took

    def _commit_try(self) -> float:
        """Seconds one try of a commit's calls may take (see `CALL_TRY`)."""
        return self.settings.transactions.timeout_ms / 1000 + 5

    def _commit_transaction(self) -> None:
        self._patiently("commit_transaction", self.producer.commit_transaction, 60, self._commit_try(), COMMIT_TRIES)

    def abort(self, fatal: bool) -> None:
        """Abort the open transaction (or, after a fatal error or a failed abort, replace the producer,
        which fences the old one), then begin the next."""
        if not fatal:
            try:
                self.producer.abort_transaction(30)
                self._begin()
                return
            except KafkaException as e:
                err = e.args[0] if e.args else None
                log.warning("stage %r: abort failed (%s); recreating the producer", self.stage_name, err)
        with contextlib.suppress(Exception):
            self.producer.flush(0)
        self.producer = self._make()
        self._begin()

    def drop(self) -> None:
        """Flush what is still to send, and drop the client (a librdkafka handle keeps reconnecting until destroyed)."""
        if self.producer is not None:
            with contextlib.suppress(Exception):
                self.producer.flush(5)
        self.producer = None
