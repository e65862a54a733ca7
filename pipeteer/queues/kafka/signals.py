"""What a stage engine's clients say, kept for its thread: faults to act upon, brokers away, records waiting.

librdkafka speaks through callbacks (`error_cb`, `stats_cb`, errors in place of records), served on
the engine's thread inside `consume` and `poll`. `ClientSignals` takes them and keeps what the
thread acts upon at its next turn (a consumer or producer that cannot go on is replaced), what its
probes say (no broker answers since when), and what its watchdog weighs (partitions with records
waiting). Each signal is also handed to the backend's `BrokerWatch`, which says it once per broker
and state change.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection

from confluent_kafka import KafkaError

from pipeteer.queues.kafka.faults import Fault, classify
from pipeteer.queues.kafka.health import BrokerWatch, broker_states
from pipeteer.queues.progress import Progress


class ClientSignals:
    """The signals of one engine's clients (written on the engine's thread; the event loop reads
    `down_since` and `backlog`)."""

    def __init__(self, watch: BrokerWatch, progress: Progress, stage: str, topic: str) -> None:
        self.watch = watch
        self.progress = progress
        self.stage = stage
        self.topic = topic
        self.down_since: float | None = None
        """Since when no broker answers the clients (None: they answer)."""
        self.consumer_fault: KafkaError | None = None
        """A fatal error of the consumer (fenced, `_FATAL`): the thread replaces it at its next turn."""
        self.producer_fault: KafkaError | None = None
        """A fatal error of the producer reported by its `error_cb`: the thread replaces it at its next turn."""
        self.waiting: list[int] = []
        """Assigned partitions whose last stable offset is past the consumer's position (statistics)."""
        self.backlog = 0
        """Records on the assigned partitions not fetched yet (from the statistics, every second;
        approximate: transaction markers count): what flow control leaves in the topic."""

    def reachable(self) -> None:
        """The cluster answered."""
        self.down_since = None
        self.watch.up()

    def on_consumer_error(self, err: KafkaError) -> None:
        if classify(err, "consumer") is Fault.CONSUMER and self.consumer_fault is None:
            self.consumer_fault = err
        self._on_client_error(err)

    def on_producer_error(self, err: KafkaError) -> None:
        if classify(err, "producer") is Fault.PRODUCER and self.producer_fault is None:
            self.producer_fault = err
        self._on_client_error(err)

    def _on_client_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN and self.down_since is None:
            self.down_since = time.monotonic()
        self.progress.failed(str(err.str()))
        self.watch.on_error(err)  # logs it, once per broker and state change, or rate-limited

    def on_consume_error(self, err: KafkaError) -> None:
        """An error `consume` returned in place of a record: the consumer's own end (replaced at the next
        turn), a fault of the cluster it rides out (said by the watch), or one to say, rate-limited."""
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if classify(err, "consumer") is Fault.CONSUMER:
            if self.consumer_fault is None:
                self.consumer_fault = err
            return
        self.progress.failed(str(err.str()))
        self.watch.limiter.log(logging.WARNING, f"stage {self.stage!r}: consume error: {err.str()}",
                               key=f"{self.stage} consume {err.code()}")

    def on_stats(self, text: str, assigned: Collection[int]) -> None:
        """The consumer's statistics: brokers seen up again, and the `assigned` partitions with records
        waiting (last stable offset past the position: a transaction marker at the end is not a
        record, and the position moves past it)."""
        try:
            stats = json.loads(text)
        except ValueError:
            return
        self.watch.brokers_seen(broker_states(stats))
        parts = stats.get("topics", {}).get(self.topic, {}).get("partitions", {})
        waiting = []
        backlog = 0
        for p in assigned:
            d = parts.get(str(p))
            if d is None:
                continue
            end, position = d.get("ls_offset", -1), d.get("app_offset", -1)
            if position < 0:  # nothing fetched since the assignment: from the committed offset
                position = max(d.get("committed_offset", -1), d.get("lo_offset", -1))
            if end >= 0 and end > position >= 0:
                waiting.append(p)
                backlog += end - position
        self.waiting = sorted(waiting)
        self.backlog = backlog
