"""The queue contract of DESIGN.md, run against every backend: memory, SQLite and Kafka (the session's broker).

Memory and SQLite read their writes at once; on Kafka a push reaches the process's consumer a moment
later, so the suite waits where the contract says "eventually" (`settled`, `eventually`). The Kafka
topics have one partition here, so items are read in the order they were pushed, as elsewhere.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pipeteer import InexistentItem, ValueTypeError
from pipeteer.queues.backends import backend_from_url
from pipeteer.queues.base import Backend, BaseQueue, Pending, Retry
from pipeteer.runtime.dlq import list_dead_letters, replay_dead_letters
from tests.conftest import QueueFactory

T = TypeVar("T")

WAIT = 30.0
"""Seconds the suite waits for what the contract says happens eventually (Kafka: a push reaching the consumer)."""


@pytest.fixture(params=["memory", "sqlite", "kafka"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "kafka":
        from pipeteer.queues.kafka import KafkaBackend
        from tests.integration.kafka.procs import backend_url

        broker, prefix = request.getfixturevalue("kafka_broker"), request.getfixturevalue("kafka_prefix")
        url = backend_url(broker, prefix, partitions=1)
        b: Backend = KafkaBackend.from_url(url, workflow_name="contract", env={}, standalone=True)  # (queues of no workflow)
    else:
        url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'queues.db'}"
        b = backend_from_url(url, workflow_name="contract", env={})
    yield b
    await asyncio.to_thread(b.close)


@pytest.fixture
def make_queue(backend: Backend) -> QueueFactory:
    return lambda Type, name: backend.make_queue(Type, [name])


async def eventually(get: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = WAIT) -> T:
    """`get()` once `ok` says so (at once where the backend reads its writes), or its last answer after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await get()
        if ok(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.02)


async def settled(q: BaseQueue[Any], n: int) -> list[str]:
    """The queue's ids once it holds `n` items (pushes seen by this process's reader)."""
    return await eventually(lambda: q.keys(), lambda ids: len(ids) >= n)


class Colour(Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Inner:
    n: int
    tags: list[str]


@dataclass
class State:
    img: bytes
    note: str | None
    inner: Inner
    colour: Colour
    scores: dict[str, float]


def a_state(i: int) -> State:
    return State(bytes([i % 256]) * 3, None if i % 2 else f"n{i}", Inner(i, ["a", str(i)]), Colour.BLUE, {"s": i / 2})


async def test_push_read_pop_round_trip_types(make_queue: QueueFactory) -> None:
    q = make_queue(State, "states")
    await q.push("a", a_state(1))
    await q.push("b", a_state(2))
    await settled(q, 2)
    assert await q.read("a") == a_state(1)
    assert await q.read() == ("a", a_state(1))
    await q.pop("a")
    assert await q.read() == ("b", a_state(2))
    with pytest.raises(InexistentItem) as e:
        await q.read("a")
    assert "'a'" in str(e.value)
    with pytest.raises(InexistentItem):
        await q.pop("a")
    with pytest.raises(KeyError):  # InexistentItem is a KeyError too
        await q.pop("zzz")


@pytest.mark.parametrize(
    ("Type", "value"),
    [(bytes, b"\x00\xff"), (bool, False), (bytes | None, None), (bytes | None, b"x"), (int, 7), (str, "é")],
)
async def test_primitive_values_round_trip(make_queue: QueueFactory, Type: type, value: object) -> None:
    q = make_queue(Type, "prims")
    await q.push("1", value)
    await settled(q, 1)
    assert await q.read("1") == value
    assert type(await q.read("1")) is type(value)


async def test_items_is_async_iterable_and_awaitable(make_queue: QueueFactory) -> None:
    q = make_queue(int, "ints")
    for i in range(600):  # more than one SQLite page
        await q.push(f"id{i}", i)
    await settled(q, 600)
    listed = await q.items()
    assert listed[:2] == [("id0", 0), ("id1", 1)] and len(listed) == 600
    assert [k async for k in q.keys()] == [f"id{i}" for i in range(600)]
    assert sum(await q.values()) == sum(range(600))


async def test_push_same_id_replaces(make_queue: QueueFactory) -> None:
    q = make_queue(str, "s")
    await q.push("x", "one")
    await q.push("y", "two")
    await settled(q, 2)
    await q.push("x", "three")
    # (where a replaced item stands in the order is the backend's: Kafka reads it as the newest record)
    items = await eventually(lambda: q.items(), lambda i: dict(i).get("x") == "three")
    assert dict(items) == {"x": "three", "y": "two"}


async def test_read_waits_for_a_push_without_busy_loop(make_queue: QueueFactory) -> None:
    q = make_queue(int, "wait")
    await q.push("first", 1)  # the reader started (Kafka: the group joined), so what is measured is the wait
    assert await asyncio.wait_for(q.read(), WAIT) == ("first", 1)
    await q.pop("first")
    reader = asyncio.create_task(q.read())
    await asyncio.sleep(0.2)
    assert not reader.done()
    started = time.process_time()
    await asyncio.sleep(0.3)
    assert time.process_time() - started < 0.15  # waiting costs (almost) no CPU
    await q.push("k", 5)
    assert await asyncio.wait_for(reader, WAIT) == ("k", 5)


async def test_wrong_type_is_rejected_and_nothing_stored(make_queue: QueueFactory) -> None:
    q = make_queue(State, "typed")
    await q.push("ok", a_state(3))
    with pytest.raises(ValueTypeError) as e:
        await q.push("bad", "not a state")  # type: ignore[arg-type]
    assert "'bad'" in str(e.value) and "str" in str(e.value) and "State" in str(e.value)
    with pytest.raises(TypeError):
        await q.push("", a_state(1))
    assert await settled(q, 1) == ["ok"]


async def test_views_map_filter_premap_prefilter(make_queue: QueueFactory) -> None:
    q = make_queue(int, "nums")
    w = q.premap(lambda s: int(s)).prefilter(lambda s: s != "13")
    for s in ["1", "2", "13", "4"]:
        await w.push(f"k{s}", s)
    await settled(q, 3)
    assert await q.items() == [("k1", 1), ("k2", 2), ("k4", 4)]
    evens = q.filter(lambda n: n % 2 == 0).map(lambda n: n * 10)
    assert await evens.items() == [("k2", 20), ("k4", 40)]
    assert await evens.read() == ("k2", 20)
    assert await evens.read("k4") == 40
    with pytest.raises(InexistentItem):
        await evens.read("k1")
    await evens.pop("k2")
    assert await q.keys() == ["k1", "k4"]


async def test_filtered_read_waits_for_a_matching_item(make_queue: QueueFactory) -> None:
    q = make_queue(int, "f")
    await q.push("odd", 1)
    await settled(q, 1)
    reader = asyncio.create_task(q.filter(lambda n: n % 2 == 0).read())
    await asyncio.sleep(0.15)
    assert not reader.done()
    await q.push("even", 2)
    assert await asyncio.wait_for(reader, WAIT) == ("even", 2)


async def test_move_is_atomic_and_checks(make_queue: QueueFactory) -> None:
    src = make_queue(int, "src")
    dst = make_queue(str, "dst")
    await src.push("1", 1)
    await settled(src, 1)
    await src.move("1", dst, "one")
    assert await src.keys() == [] and await eventually(lambda: dst.items(), bool) == [("1", "one")]
    with pytest.raises(InexistentItem):
        await src.move("1", dst, "again")
    await src.push("2", 2)
    await settled(src, 1)
    with pytest.raises(ValueTypeError):
        await src.move("2", dst, 2)  # type: ignore[arg-type]
    assert await src.keys() == ["2"] and await dst.keys() == ["1"]  # nothing half-moved


@dataclass
class Stamped:
    at: datetime.datetime
    n: int


@pytest.mark.parametrize(
    "bad, why",
    [
        (Stamped(datetime.datetime(2026, 1, 1), 1), "naive"),  # no time zone: ambiguous once stored
        (Stamped(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), 2**63), "long"),  # past Avro's long
    ],
)
async def test_values_production_rejects_are_rejected_everywhere(make_queue: QueueFactory, bad: Stamped, why: str) -> None:
    """One codec on every backend, memory (and so the TestDriver) included: the same values fail the same way."""
    q = make_queue(Stamped, "stamped")
    await q.push("ok", Stamped(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), 1))
    with pytest.raises(ValueTypeError):
        await q.push("bad", bad)
    assert await settled(q, 1) == ["ok"]  # nothing stored, nothing already stored lost


async def test_pending_count_oldest_age_and_arrival_times(make_queue: QueueFactory) -> None:
    q = make_queue(int, "waiting")
    dst = make_queue(int, "next")
    await settled(q, 0)
    assert (await q.pending()).count == 0 and len(q) == 0
    pushed = time.time()
    for id in ("a", "b", "c"):
        await q.push(id, 1)
    await settled(q, 3)
    await asyncio.sleep(0.3)
    pending = await q.pending()
    assert pending.count == 3 and len(q) == 3
    assert pending.oldest_age is not None and 0.3 <= pending.oldest_age < WAIT
    since = q.pending_since()
    assert [id for id, _ in since] == ["a", "b", "c"]  # oldest first
    assert all(pushed - 1 <= t <= time.time() for _, t in since)
    assert [t for _, t in since] == sorted(t for _, t in since)
    await q.move("a", dst, 2)
    await q.pop("b")
    await q.pop("c")
    assert await q.pending() == Pending(0, None) and len(q) == 0


async def test_failing_item_is_retried_after_the_others_then_a_dead_letter(make_queue: QueueFactory) -> None:
    """`retry.attempts` counts every attempt, the first included, on every backend; the item waits out
    its backoff while the others go on; after the last attempt it leaves the queue for the dead letters."""
    q = make_queue(int, "failing")
    q.retry = Retry(attempts=2, initial=0.05)
    await q.push("bad", -1)
    await q.push("ok", 1)
    await settled(q, 2)
    assert await q.read() == ("bad", -1)
    assert q.fail(ValueError("cannot -1")) == "bad"  # attempt 1 of 2: retried after its backoff
    assert await q.read() == ("ok", 1)  # meanwhile the next item goes
    await q.pop("ok")
    assert await asyncio.wait_for(q.read(), WAIT) == ("bad", -1)
    assert q.fail(ValueError("cannot -1")) == "bad"  # attempt 2 of 2: a dead letter
    assert q.fail(ValueError("no item in progress")) is None
    [letter] = await eventually(lambda: asyncio.to_thread(q.dead_letters), lambda letters: len(letters) == 1)
    assert (letter.id, letter.value, letter.error_class, letter.error_message, letter.attempts) == (
        "bad", -1, "ValueError", "cannot -1", 2
    )
    assert "ValueError: cannot -1" in letter.stacktrace and letter.failed_at <= time.time()
    assert await q.keys() == []
    assert await asyncio.to_thread(q.replay) == ["bad"]
    assert await asyncio.wait_for(q.read(), WAIT) == ("bad", -1)  # pending again, its attempts from zero
    assert await eventually(lambda: asyncio.to_thread(q.dead_letters), lambda letters: not letters) == []


async def dead_letter(q: BaseQueue[Any], ids: list[str]) -> None:
    """Push each id and fail it once (the queue's policy: one attempt), oldest first."""
    q.retry = Retry(attempts=1)
    for i, id in enumerate(ids):
        await q.push(id, i)
    await settled(q, len(ids))
    for _ in ids:
        await asyncio.wait_for(q.read(), WAIT)
        q.fail(RuntimeError("out of luck"))
    await eventually(lambda: asyncio.to_thread(q.dead_letters), lambda letters: len(letters) == len(ids))


async def test_the_dlq_command_lists_and_replays_on_every_backend(
    make_queue: QueueFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pipeteer dlq list [--json] [--stacktrace]` and `dlq replay (--id | --all)` through the one contract."""
    q = make_queue(int, "dlq")
    assert await asyncio.to_thread(list_dead_letters, q, "s") == 0
    assert "no dead letters for stage 's'" in capsys.readouterr().out
    await dead_letter(q, ["x", "y"])
    assert await asyncio.to_thread(list_dead_letters, q, "s", stacktrace=True) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out if "\tRuntimeError: out of luck\t" in line] == ["x", "y"]
    assert all(line.endswith("attempts=1") for line in out if "\tRuntimeError" in line)
    assert sum("RuntimeError: out of luck" == line for line in out) == 2  # each stack trace's last line
    assert await asyncio.to_thread(list_dead_letters, q, "s", as_json=True) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["value"], r["error_class"], r["attempts"]) for r in rows] == [
        ("x", "0", "RuntimeError", 1), ("y", "1", "RuntimeError", 1)
    ]
    assert await asyncio.to_thread(replay_dead_letters, q, "s", ["y"]) == 0
    assert capsys.readouterr().out == f"replayed y -> {q.describe()}\n"
    assert await eventually(lambda: q.items(), bool) == [("y", 1)]
    # --all: x (on Kafka y again: a replay by id does not mark it replayed there)
    assert await asyncio.to_thread(replay_dead_letters, q, "s", None) == 0
    assert f"replayed x -> {q.describe()}" in capsys.readouterr().out
    assert dict(await eventually(lambda: q.items(), lambda items: len(items) == 2)) == {"x": 0, "y": 1}
    assert await asyncio.to_thread(replay_dead_letters, q, "s", None) == 1  # nothing left to replay
    assert await asyncio.to_thread(list_dead_letters, q, "s") == 0
    assert "no dead letters" in capsys.readouterr().out


async def test_page_and_count_are_slices_of_pending_since(make_queue: QueueFactory) -> None:
    """`page` and `count` agree with `pending_since()` (order, offset/limit, `match`, `older_than`) on every
    backend, without reading values; the first half of the items is older than the second."""
    q = make_queue(int, "review")
    ids = [f"photo-{i:02d}" + ("-x7" if i % 4 == 0 else "") for i in range(30)]
    await q.push_many(((id, i) for i, id in enumerate(ids[:15])), concurrency=1)
    await settled(q, 15)
    await asyncio.sleep(0.3)
    split = time.time()
    await q.push_many(((id, i) for i, id in enumerate(ids[15:])), concurrency=1)
    await settled(q, 30)
    since = q.pending_since()
    assert [id for id, _ in since] == ids
    assert q.count() == len(q) == 30
    assert q.page() == since and q.page(0, 1000) == since
    assert q.page(5, 10) == since[5:15] and q.page(28, 10) == since[28:] and q.page(30) == [] and q.page(3, 0) == []
    x7 = [pair for pair in since if "x7" in pair[0]]
    assert q.count(match="x7") == len(x7) == 8 and q.page(2, 3, match="x7") == x7[2:5]
    assert q.count(match="X7") == 0 and q.count(match="%") == 0 and q.page(match="_") == []  # literal, case-sensitive
    now = time.time()
    older = now - split + 0.1  # waited longer than the second half has
    assert q.count(older_than=older, now=now) == 15 and q.page(10, 10, older_than=older, now=now) == since[10:15]
    assert q.count(match="x7", older_than=older, now=now) == 4
    assert q.page(1, 2, match="x7", older_than=older, now=now) == x7[1:3]
    assert q.count(older_than=3600) == 0 and q.page(older_than=3600) == []
    with pytest.raises(ValueError, match="offset"):
        q.page(-1, 5)
    await q.pop(ids[0])
    assert q.count() == 29 and q.page(0, 2) == since[1:3]
