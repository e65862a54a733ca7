"""1% malformed input (bad magic byte, undecodable body): each record lands in the stage's dead-letter
topic exactly once, with headers saying what and where, and never in the output; a record of a writer
schema nobody published is held instead (pending, counted on /readyz: a version that knows it may come),
never a dead letter; the stage keeps going (and is killed once mid-stream for good measure)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer

from pipeteer.codec import codec_for
from pipeteer.queues.kafka import KafkaBackend
from pipeteer.spec import names
from tests.integration.kafka.apps import Copied, Item, copy_workflow
from tests.integration.kafka.procs import StageProcess, backend_url, read_topic
from tests.kafka_broker import Broker

pytestmark = pytest.mark.slow

N = 2000


def malformed(i: int, good: bytes) -> bytes:
    kind = i % 3
    if kind == 0:
        return b"\x00\x01" + good[2:]  # bad magic byte
    if kind == 1:
        return good[:2] + bytes(8) + good[10:]  # a writer schema fingerprint nobody knows
    return good[:10] + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x0f"  # a body that is not the schema's


async def ensure_topics(url: str) -> None:
    backend = KafkaBackend.from_url(url, workflow_name=copy_workflow.name, env={})
    try:
        await backend.ensure_topics([backend.names.queue(["input"])])
    finally:
        backend.close()


def test_malformed_records_are_dead_lettered_once(kafka_broker: Broker, kafka_prefix: str, tmp_path: Path) -> None:
    kafka_bootstrap = kafka_broker.bootstrap
    url = backend_url(kafka_broker, kafka_prefix, commit_records=100)
    asyncio.run(ensure_topics(url))
    in_topic = names.queue_topic("copy", ["input"], kafka_prefix)
    codec = codec_for(Item)
    bad = set(random.Random(3).sample(range(N), N // 100))
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "partitioner": "murmur2_random"})
    for i in range(N):
        good = codec.encode(Item(i, f"text {i}"))
        producer.produce(in_topic, malformed(i, good) if i in bad else good, f"item-{i}".encode())
    producer.flush(30)
    stage = StageProcess(
        "tests.integration.kafka.apps:copy_app", "copy", url, "copy-1", tmp_path, env={"SLOW_SECONDS": "0.001"}
    ).start()
    out_topic = names.queue_topic("copy", ["output"], kafka_prefix)
    dlq_topic = names.dead_letter_topic("copy", ["copy"], kafka_prefix)
    try:
        stage.wait_ready()
        time.sleep(0.8)
        stage.kill9()
        stage.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(read_topic(kafka_bootstrap, out_topic)) < N - len(bad):
            time.sleep(0.3)
        outputs = read_topic(kafka_bootstrap, out_topic)
        out_keys = [m.key().decode() for m in outputs]
        assert sorted(out_keys) == sorted(f"item-{i}" for i in range(N) if i not in bad)
        out_codec = codec_for(Copied)
        assert all(out_codec.decode(m.value()).text == f"TEXT {m.key().decode()[5:]}" for m in outputs)
        dead = read_topic(kafka_bootstrap, dlq_topic)
        unknown = {i for i in bad if i % 3 == 1}
        assert sorted(m.key().decode() for m in dead) == sorted(f"item-{i}" for i in bad - unknown)
        held = httpx.get(f"{stage.base}/readyz", timeout=10).json()["held"]
        assert [(h["stage"], h["items"]) for h in held] == [("copy", len(unknown))]
        for m in dead:
            h = {k: v.decode() for k, v in m.headers()}
            i = int(m.key().decode()[5:])
            assert h["pipeteer.error.class"] == "pipeteer.errors.DecodeError"
            assert h["pipeteer.stage"] == "copy"
            assert h["pipeteer.source.topic"] == in_topic
            assert int(h["pipeteer.source.partition"]) >= 0 and int(h["pipeteer.source.offset"]) >= 0
            assert "Traceback" in h["pipeteer.error.stacktrace"] or "DecodeError" in h["pipeteer.error.stacktrace"]
            assert m.value() == malformed(i, codec.encode(Item(i, f"text {i}")))
    finally:
        stage.stop()
