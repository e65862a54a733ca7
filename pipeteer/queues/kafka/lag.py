"""Consumer lag of every stage of a workflow, measured from the cluster, not from a consumer's position.

A stage's lag is, per partition of its input topic, the last stable offset (what a read_committed
consumer can read) minus the offset its consumer group committed (the earliest offset when it
committed none). Measured so, it is true for every partition (also those that never gave a
record), while the stage catches up, while it is paused, and while none of its instances runs: so
every stage service of the workflow reports the lag of every stage (`LagMonitor`), and a stopped
stage's backlog stays visible as long as any other stage of the workflow runs. Dashboards and
alerts take the maximum over the reporting instances.

The committed offsets are asked through a consumer of each group (never subscribing, never
committing), not the admin client: librdkafka 2.16's admin client crashes the process (SIGSEGV in
its OffsetFetch handling) when a group's coordinator answers while it is still loading, as after
a new group's first commit or a broker restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin._listoffsets import OffsetSpec

from pipeteer.queues.kafka.changelog import committed

log = logging.getLogger("pipeteer.kafka")

LAG_INTERVAL = 5.0
"""Seconds between two measurements of every stage's lag."""


@dataclass(frozen=True)
class StageInput:
    """A stage, the topic it reads and its consumer group."""

    stage: str
    topic: str
    group: str


def partitions(admin: Any, timeout: float = 10.0) -> dict[str, list[int]]:
    """Every topic's partitions. (All topics: asking for one that does not exist yet would make a broker
    with `auto.create.topics.enable` create it, with its default partition count.)"""
    meta = admin.list_topics(timeout=timeout).topics
    return {name: sorted(t.partitions) for name, t in meta.items() if t.error is None}


def group_lag(admin: Any, group: Any, topic: str, parts: list[int], timeout: float = 10.0) -> dict[int, int]:
    """Records per partition of `topic` (partitions `parts`) that the consumer group of the consumer
    `group` has not committed yet."""
    if not parts:
        return {}
    tps = [TopicPartition(topic, p) for p in parts]

    def offsets(spec: Any) -> dict[int, int]:
        futures = admin.list_offsets({tp: spec for tp in tps}, isolation_level=IsolationLevel.READ_COMMITTED,
                                     request_timeout=timeout)
        return {tp.partition: f.result(timeout=timeout).offset for tp, f in futures.items()}

    latest: Callable[[], Any] = OffsetSpec.latest  # (the client's own methods carry no types)
    earliest: Callable[[], Any] = OffsetSpec.earliest
    ends, starts = offsets(latest()), offsets(earliest())
    done = {tp.partition: tp.offset for tp in committed(group, topic, parts, timeout=timeout)}
    return {
        p: max(0, end - (done[p] if done.get(p, -1) >= 0 else starts[p]))
        for p, end in ends.items()
    }


class LagMonitor:
    """A thread measuring the lag of `stages` every `interval` seconds and handing it to `report(stage, partition, lag)`."""

    def __init__(self, admin: Callable[[], Any], stages: Sequence[StageInput],
                 report: Callable[[str, int, int], None], *, consumer: Callable[[str], Any],
                 interval: float = LAG_INTERVAL, reachable: Callable[[], bool] = lambda: True) -> None:
        self.admin = admin
        self.consumer = consumer
        """A consumer of a group (`consumer(group)`), to ask its committed offsets; made once per group,
        used by this monitor's thread only, closed when it stops."""
        self._consumers: dict[str, Any] = {}
        self.stages = list(stages)
        self.report = report
        self.interval = interval
        self.reachable = reachable
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeteer-kafka-lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def measure(self) -> None:
        if not self.reachable():
            return
        try:
            topics = partitions(self.admin())
        except (KafkaException, TimeoutError) as e:
            log.debug("consumer lag not measured: %s", e)
            return
        for s in self.stages:
            if self._stop.is_set() or s.topic not in topics:  # (a topic not created yet has no lag)
                continue
            try:
                group = self._consumers.get(s.group)
                if group is None:
                    group = self._consumers[s.group] = self.consumer(s.group)
                lags = group_lag(self.admin(), group, s.topic, topics[s.topic])
            except (KafkaException, TimeoutError) as e:  # (a broker away or moving: said by health.BrokerWatch)
                log.debug("lag of stage %r not measured: %s", s.stage, e)
                continue
            for partition, lag in lags.items():
                self.report(s.stage, partition, lag)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.measure()
                except Exception:  # a measurement must never stop the next ones
                    log.exception("measuring consumer lag failed")
                self._stop.wait(self.interval)
        finally:
            for consumer in self._consumers.values():
                consumer.close()
            self._consumers.clear()
