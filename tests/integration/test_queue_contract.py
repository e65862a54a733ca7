"""The queue contract of DESIGN.md, run against every backend (see `backend_url` in conftest)."""

from __future__ import annotations

import asyncio
import datetime
import time
from dataclasses import dataclass
from enum import Enum

import pytest

from pipeteer import InexistentItem, ValueTypeError
from tests.conftest import QueueFactory


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
    assert await q.read("1") == value
    assert type(await q.read("1")) is type(value)


async def test_items_is_async_iterable_and_awaitable(make_queue: QueueFactory) -> None:
    q = make_queue(int, "ints")
    for i in range(600):  # more than one SQLite page
        await q.push(f"id{i}", i)
    listed = await q.items()
    assert listed[:2] == [("id0", 0), ("id1", 1)] and len(listed) == 600
    assert [k async for k in q.keys()] == [f"id{i}" for i in range(600)]
    assert sum(await q.values()) == sum(range(600))


async def test_push_same_id_replaces(make_queue: QueueFactory) -> None:
    q = make_queue(str, "s")
    await q.push("x", "one")
    await q.push("y", "two")
    await q.push("x", "three")
    assert await q.items() == [("x", "three"), ("y", "two")]


async def test_read_waits_for_a_push_without_busy_loop(make_queue: QueueFactory) -> None:
    q = make_queue(int, "wait")
    reader = asyncio.create_task(q.read())
    await asyncio.sleep(0.2)
    assert not reader.done()
    started = time.process_time()
    await asyncio.sleep(0.3)
    assert time.process_time() - started < 0.15  # waiting costs (almost) no CPU
    await q.push("k", 5)
    assert await asyncio.wait_for(reader, 1) == ("k", 5)


async def test_wrong_type_is_rejected_and_nothing_stored(make_queue: QueueFactory) -> None:
    q = make_queue(State, "typed")
    await q.push("ok", a_state(3))
    with pytest.raises(ValueTypeError) as e:
        await q.push("bad", "not a state")  # type: ignore[arg-type]
    assert "'bad'" in str(e.value) and "str" in str(e.value) and "State" in str(e.value)
    with pytest.raises(TypeError):
        await q.push("", a_state(1))
    assert await q.keys() == ["ok"]


async def test_views_map_filter_premap_prefilter(make_queue: QueueFactory) -> None:
    q = make_queue(int, "nums")
    w = q.premap(lambda s: int(s)).prefilter(lambda s: s != "13")
    for s in ["1", "2", "13", "4"]:
        await w.push(f"k{s}", s)
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
    reader = asyncio.create_task(q.filter(lambda n: n % 2 == 0).read())
    await asyncio.sleep(0.15)
    assert not reader.done()
    await q.push("even", 2)
    assert await asyncio.wait_for(reader, 1) == ("even", 2)


async def test_move_is_atomic_and_checks(make_queue: QueueFactory) -> None:
    src = make_queue(int, "src")
    dst = make_queue(str, "dst")
    await src.push("1", 1)
    await src.move("1", dst, "one")
    assert await src.keys() == [] and await dst.items() == [("1", "one")]
    with pytest.raises(InexistentItem):
        await src.move("1", dst, "again")
    await src.push("2", 2)
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
    assert await q.keys() == ["ok"]  # nothing stored, nothing already stored lost
