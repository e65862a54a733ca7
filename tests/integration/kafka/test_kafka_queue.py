"""Kafka queues in one process, beyond the shared contract (`tests/integration/test_queue_contract.py`
runs on Kafka too): concurrent completions, restarts, fencing, claim checks.

Kafka is asynchronous between a push and the consumer that serves reads, so visibility is
checked with `eventually`; order across partitions is not global, so listings compare as sets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest

from pipeteer import InexistentItem, ValueTypeError
from pipeteer.errors import RecordTooLarge
from pipeteer.queues.kafka import KafkaBackend
from tests.integration.kafka.procs import backend_url
from tests.integration.test_queue_contract import eventually
from tests.kafka_broker import Broker

T = TypeVar("T")


@pytest.fixture
async def backend(kafka_broker: Broker, kafka_prefix: str) -> AsyncIterator[KafkaBackend]:
    b = KafkaBackend.from_url(backend_url(kafka_broker, kafka_prefix), workflow_name="contract", env={}, standalone=True)
    yield b
    await asyncio.to_thread(b.close)


async def keys(q: Any) -> set[str]:
    return set(await q.keys())


async def test_move_is_atomic_and_exactly_once(backend: KafkaBackend) -> None:
    src = backend.make_queue(int, ["src"])
    dst = backend.make_queue(str, ["dst"])
    for i in range(5):
        await src.push(str(i), i)
    await eventually(lambda: keys(src), lambda k: len(k) == 5)
    await src.move("1", dst, "one")  # completed by id: returns once committed
    assert await keys(src) == {"0", "2", "3", "4"}
    assert await eventually(lambda: dst.items(), lambda i: i == [("1", "one")]) == [("1", "one")]
    with pytest.raises(InexistentItem):
        await src.move("1", dst, "again")
    with pytest.raises(ValueTypeError):
        await src.move("2", dst, 2)  # type: ignore[arg-type]
    assert await keys(src) == {"0", "2", "3", "4"}  # nothing half-moved
    # five concurrent completions of one item: one moves it, the others find it gone
    results = await asyncio.gather(*(src.move("3", dst, f"c{k}") for k in range(5)), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, InexistentItem) for r in results if r is not None)
    assert await eventually(lambda: keys(dst), lambda k: k == {"1", "3"}) == {"1", "3"}


async def test_pending_items_survive_a_restart(kafka_broker: Broker, kafka_prefix: str) -> None:
    """Items completed out of order: the next instance restores the rest from the changelog and the input."""
    url = backend_url(kafka_broker, kafka_prefix, instance="one")
    first = KafkaBackend.from_url(url, workflow_name="contract", env={}, standalone=True)
    q = first.make_queue(int, ["tasks"])
    out = first.make_queue(int, ["done"])
    for i in range(20):
        await q.push(f"t{i}", i)
    await eventually(lambda: keys(q), lambda k: len(k) == 20)
    for i in (15, 3, 9):
        await q.move(f"t{i}", out, i * 10)
    await asyncio.to_thread(first.close)
    second = KafkaBackend.from_url(url, workflow_name="contract", env={}, standalone=True)
    try:
        q2 = second.make_queue(int, ["tasks"])
        expected = {f"t{i}" for i in range(20)} - {"t15", "t3", "t9"}
        assert await eventually(lambda: keys(q2), lambda k: k == expected) == expected
        out2 = second.make_queue(int, ["done"])
        assert sorted(await eventually(lambda: out2.items(), lambda i: len(i) == 3)) == [
            ("t15", 150),
            ("t3", 30),
            ("t9", 90),
        ]
    finally:
        await asyncio.to_thread(second.close)


async def test_fenced_producer_is_recreated_and_nothing_is_duplicated(
    kafka_broker: Broker, kafka_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another producer takes the stage's transactional id mid-stream (as a restarted twin would): the
    stage's commit fails fatally, it recreates its producer, rewinds to the committed offsets, and
    the read_committed output still has each item exactly once."""
    from confluent_kafka import Producer

    from tests.integration.kafka.procs import read_topic

    url = backend_url(kafka_broker, kafka_prefix, instance="solo", commit_interval_ms=50)
    b = KafkaBackend.from_url(url, workflow_name="fence", env={}, standalone=True)
    src, dst = b.make_queue(int, ["src"]), b.make_queue(int, ["dst"])
    n = 400
    await asyncio.gather(*(src.push(f"k{i}", i) for i in range(n)))

    going = asyncio.Event()
    going.set()

    async def stage() -> None:
        while True:
            await going.wait()
            id, x = await src.read()
            await asyncio.sleep(0.002)
            await src.move(id, dst, x * 2)

    task = asyncio.create_task(stage())
    try:
        engine = await eventually(lambda: _engine(b), lambda e: e is not None and e.committed_items > 50)
        assert engine is not None
        going.clear()  # the stage still has work when the intruder has taken its id (it was done first, at times)
        intruder = Producer({"bootstrap.servers": kafka_broker.bootstrap, "transactional.id": engine.transactional_id})
        await asyncio.to_thread(intruder.init_transactions, 30)
        going.set()
        await eventually(lambda: _engine(b), lambda e: e is not None and e.committed_items >= n, timeout=60)
    finally:
        task.cancel()
        await asyncio.to_thread(b.close)
    records = await asyncio.to_thread(read_topic, kafka_broker.bootstrap, dst.topic)
    keys = [m.key().decode() for m in records]
    assert sorted(keys) == sorted(f"k{i}" for i in range(n))
    assert "fenced" in caplog.text and "recreating the producer" in caplog.text


async def _engine(b: KafkaBackend) -> Any:
    return b.engines.get(("src",))


async def test_a_record_too_large_is_refused_by_name_and_nothing_is_lost(backend: KafkaBackend) -> None:
    """Without a blob store, a value above `message.max.bytes` is refused before any client sees it,
    naming the item and what to do: a push raises, and so does a stage's move, which leaves the item
    pending (its transaction is not aborted, and the stage's error path can dead-letter it)."""
    src, dst = backend.make_queue(str, ["letters"]), backend.make_queue(str, ["sealed"])
    huge = "x" * 1_200_000
    refused = r"item 'huge' encodes to 1,200,0\d\d bytes, more than a Kafka record takes here \(message\.max\.bytes 1,000,000"
    with pytest.raises(RecordTooLarge, match=refused):
        await src.push("huge", huge)
    await src.push("a", "small")
    assert await eventually(lambda: keys(src), lambda k: k == {"a"}) == {"a"}
    id, _ = await src.read()
    with pytest.raises(RecordTooLarge, match=r"queue 'sealed' .* item 'a' encodes to .* \(PIPETEER_BLOBS\)"):
        await src.move(id, dst, huge)
    assert await keys(src) == {"a"}  # still pending, nothing half-moved
    await src.move(id, dst, "sealed")  # and the stage goes on
    assert await eventually(lambda: dst.items(), lambda i: len(i) == 1) == [("a", "sealed")]
    assert backend.engines[("letters",)].committed_items == 1


async def test_large_records_travel_by_claim_check(kafka_broker: Broker, kafka_prefix: str, tmp_path: Any) -> None:
    """Records above `claim_check_bytes` go to the blob store; the topics carry small references."""
    import os

    from confluent_kafka import Consumer

    url = backend_url(kafka_broker, kafka_prefix) + f"&blobs={tmp_path.as_uri()}&claim_check_bytes=100000"
    b = KafkaBackend.from_url(url, workflow_name="contract", env={}, standalone=True)
    try:
        src, dst = b.make_queue(bytes, ["photos"]), b.make_queue(bytes, ["rectified"])
        big, small = os.urandom(1_500_000), b"tiny"  # above Kafka's default 1 MB record limit
        await src.push("big", big)
        await src.push("small", small)
        assert await eventually(lambda: keys(src), lambda k: k == {"big", "small"}) == {"big", "small"}
        assert await src.read("big") == big
        await src.move("big", dst, big[::-1])
        assert await eventually(lambda: dst.items(), lambda i: len(i) == 1) == [("big", big[::-1])]
    finally:
        await asyncio.to_thread(b.close)
    consumer = Consumer(
        {"bootstrap.servers": kafka_broker.bootstrap, "group.id": f"{kafka_prefix}-peek", "auto.offset.reset": "earliest",
         "isolation.level": "read_committed"}
    )
    consumer.subscribe([src.topic])
    sizes: dict[str, int] = {}
    deadline = time.monotonic() + 20
    while len(sizes) < 2 and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            sizes[m.key().decode()] = len(m.value())
    consumer.close()
    assert sizes["small"] < 100 and sizes["big"] < 500  # a BlobRef, not the 1.5 MB record
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 2  # the photo and the rectified one


async def test_a_stage_ahead_of_the_brokers_waits_and_loses_nothing(kafka_broker: Broker, kafka_prefix: str) -> None:
    """The stage's producer holds at most `queue.buffering.max.kbytes` of records not yet acknowledged
    (`transactions.UNACKED_BYTES` by default): a stage loop whose outputs would go beyond waits in
    its move until the brokers have taken them, and every item arrives once, with its value."""
    # (commits only when the stage has finished all it has: none falls inside the burst below)
    options = {"queue.buffering.max.kbytes": 1100, "claim_check_bytes": 1_000_000, "commit_interval_ms": 5_000}
    url = backend_url(kafka_broker, kafka_prefix, **options)
    b = KafkaBackend.from_url(url, workflow_name="contract", env={}, standalone=True)
    try:
        src, dst = b.make_queue(str, ["pages"]), b.make_queue(str, ["stamped"])
        n = 60
        for i in range(n):
            await src.push(f"p{i}", f"{i}:" + "x" * 200_000)  # ~200 KB each: six fill the producer
        await eventually(lambda: keys(src), lambda k: len(k) == n)

        async def stage(count: int) -> None:  # a stage loop (push and pop become one move: `pipeteer.wiring`)
            for _ in range(count):
                id, text = await src.read()
                await src.move(id, dst, text.upper())

        await stage(1)  # the first item is committed at once, on its own
        await eventually(lambda: dst.items(), lambda i: len(i) == 1)
        engine = b.engines[("pages",)]
        assert engine.waits_for_room == 0
        await stage(n - 1)  # 59 items, 12 MB, in one burst
        assert engine.waits_for_room > 0  # the bound was reached, and the loop waited
        # the loop goes back to read(): the stage has finished what it had, and the engine commits
        reading = asyncio.ensure_future(src.read())
        got = dict(await eventually(lambda: dst.items(), lambda i: len(i) >= n))
        reading.cancel()
        assert len(got) == n and all(got[f"p{i}"] == f"{i}:" + "X" * 200_000 for i in range(n))
        assert await keys(src) == set()
    finally:
        await asyncio.to_thread(b.close)
