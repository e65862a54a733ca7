"""A three-stage automatic workflow used by the reliability tests (real processes, kill -9)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pipeteer import App, Pipeline, ReadQueue, Workflow, Wrapped, WriteQueue


@dataclass
class Raw:
    n: int


@dataclass
class Squared:
    n: int
    sq: int


@dataclass
class Signed:
    n: int
    sq: int
    neg: int


@dataclass
class Result:
    n: int
    total: int


def post_square(r: Raw, sq: int) -> Squared:
    return Squared(r.n, sq)


def post_negate(s: Squared, neg: int) -> Signed:
    return Signed(s.n, s.sq, neg)


def post_sum(s: Signed, total: int) -> Result:
    return Result(s.n, total)


workflow = Workflow(
    Raw,
    Result,
    pipelines={
        "square": Wrapped(Raw, Pipeline(int, int), pre=lambda r: r.n, post=post_square),
        "negate": Wrapped(Squared, Pipeline(int, int), pre=lambda s: s.sq, post=post_negate),
        "sum": Wrapped(Signed, Pipeline(Signed, int), pre=lambda s: s, post=post_sum),
    },
    name="chain",
)


async def square(Qin: ReadQueue[int], Qout: WriteQueue[int]) -> None:
    while True:
        id, n = await Qin.read()
        await Qout.push(id, n * n)
        await Qin.pop(id)


async def negate(Qin: ReadQueue[int], Qout: WriteQueue[int]) -> None:
    while True:
        id, sq = await Qin.read()
        await Qout.push(id, -sq)
        await Qin.pop(id)


async def total(Qin: ReadQueue[Signed], Qout: WriteQueue[int]) -> None:
    slow = float(os.environ.get("CHAIN_SLOW_SECONDS", "0"))
    while True:
        id, s = await Qin.read()
        if slow:
            import time

            time.sleep(slow)  # a CPU-bound stage: widens the window a kill -9 can land in
        await Qout.push(id, s.n + s.sq + s.neg)
        await Qin.pop(id)


app = App(workflow, {"square": square, "negate": negate, "sum": total})
