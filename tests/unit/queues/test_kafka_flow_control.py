"""Flow control of a Kafka stage engine: a full pending table stops the input without dropping the
client's prefetched records (no pause), and pauses the partitions only when it stays full."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from pipeteer.codec import ValueCodec, make_codec
from pipeteer.plan import TopicNames
from pipeteer.queues.base import Retry
from pipeteer.queues.kafka import engine as engine_module
from pipeteer.queues.kafka.config import KafkaSettings
from pipeteer.queues.kafka.engine import HOLD, StageEngine
from pipeteer.queues.kafka.health import BrokerWatch, watch
from pipeteer.queues.kafka.pending import Entry


class Host:
    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.names = TopicNames("wf", "t")
        self.watch: BrokerWatch = watch("b:1")

    def stage_metrics(self, stage: str) -> Any:
        return None

    def known_topics(self) -> set[str]:
        return set()

    def ensure_topics_sync(self, topics: Iterable[str], *, extra_stage: Sequence[str] | None = None) -> None:
        pass


class Queue:
    topic = "t.wf.input"
    codec: ValueCodec[Any] = make_codec(str)
    retry = Retry()

    def describe(self) -> str:
        return "queue 'input'"


class Consumer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def assignment(self) -> list[str]:
        return ["t.wf.input/0"]

    def pause(self, partitions: list[str]) -> None:
        self.calls.append("pause")

    def resume(self, partitions: list[str]) -> None:
        self.calls.append("resume")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(engine_module.time, "monotonic", lambda: now[0])
    return now


def engine_with(n: int, consumer: Consumer) -> StageEngine:
    engine = StageEngine(Host(KafkaSettings.from_url("kafka://b:1?max_pending=4", env={})), Queue(), ("s",))
    engine._consumer = consumer
    engine.table.add_many(Entry(f"i{k}", "v", b"v", 0, k, 0.0) for k in range(n))
    return engine


def finish(engine: StageEngine, n: int) -> None:
    for e in list(engine.table.entries.values())[:n]:
        engine.table.finish(e.id, ())


def test_a_table_drained_within_the_hold_never_pauses(clock: list[float]) -> None:
    consumer = Consumer()
    engine = engine_with(4, consumer)
    assert engine._flow_control() is False  # full: no input taken, the prefetch kept
    finish(engine, 2)
    assert engine._flow_control() is False  # not below half yet
    finish(engine, 1)
    assert engine._flow_control() is True
    assert consumer.calls == []


def test_a_table_full_past_the_hold_pauses_then_resumes_at_half(clock: list[float]) -> None:
    consumer = Consumer()
    engine = engine_with(4, consumer)
    assert engine._flow_control() is False
    clock[0] += HOLD
    assert engine._flow_control() is True  # paused: consume serves the group, takes nothing
    assert consumer.calls == ["pause"]
    finish(engine, 3)
    assert engine._flow_control() is True
    assert consumer.calls == ["pause", "resume"]
