"""A workflow shipped in versions, for the rolling-upgrade tests: In -> a -> Mid -> h (a person) -> Reviewed -> b -> Out.

The version is chosen by `ROLLOUT_VERSION` when the module is imported (each `pipeteer run` process
is one version, as a pod of one release is), so every version has the same module and class names,
hence the same Avro names, as two releases of one code base have:

- 1: the first release;
- 2: compatible both ways (`pipeteer schemas check` calls it full): `Mid` gets `note: str | None = None`,
  `Reviewed` and `Out` get fields with defaults, and a's transform changes;
- 3: incompatible: `Mid.n` becomes a `str`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException

from pipeteer import App, InexistentItem, Pipeline, ReadQueue, Workflow, WriteQueue

VERSION = int(os.environ.get("ROLLOUT_VERSION", "1"))


@dataclass
class In:
    n: int


if VERSION == 1:

    @dataclass
    class Mid:
        n: int

    @dataclass
    class Reviewed:
        n: int
        ok: bool

    @dataclass
    class Out:
        n: int
        ok: bool
        total: int

elif VERSION == 2:

    @dataclass
    class Mid:  # type: ignore[no-redef]
        n: int
        note: str | None = None

    @dataclass
    class Reviewed:  # type: ignore[no-redef]
        n: int
        ok: bool
        reviewer: str = ""

    @dataclass
    class Out:  # type: ignore[no-redef]
        n: int
        ok: bool
        total: int
        version: int = 1

else:

    @dataclass
    class Mid:  # type: ignore[no-redef]
        n: str

    @dataclass
    class Reviewed:  # type: ignore[no-redef]
        n: int
        ok: bool

    @dataclass
    class Out:  # type: ignore[no-redef]
        n: int
        ok: bool
        total: int


workflow = Workflow(
    In,
    Out,
    pipelines={"a": Pipeline(In, Mid), "h": Pipeline(Mid, Reviewed), "b": Pipeline(Reviewed, Out)},
    name="rollout",
)


def number(mid: Mid) -> int:
    return int(mid.n)


async def a(Qin: ReadQueue[In], Qout: WriteQueue[Mid]) -> None:
    while True:
        id, item = await Qin.read()
        if VERSION == 1:
            await Qout.push(id, Mid(item.n))
        elif VERSION == 2:
            await Qout.push(id, Mid(item.n, note=f"v2 saw {item.n}"))  # type: ignore[call-arg]
        else:
            await Qout.push(id, Mid(str(item.n)))  # type: ignore[arg-type]


def h(Qin: ReadQueue[Mid], Qout: WriteQueue[Reviewed]) -> FastAPI:
    """The person's page: the pending tasks, and a decision on one."""
    api = FastAPI()

    @api.get("/tasks")
    async def tasks() -> list[str]:
        return list(await Qin.keys())

    @api.post("/decide")
    async def decide(id: str, ok: bool) -> dict[str, object]:
        try:
            mid = await Qin.read(id)
            if VERSION == 2:
                await Qout.push(id, Reviewed(number(mid), ok, reviewer="v2"))  # type: ignore[call-arg]
            else:
                await Qout.push(id, Reviewed(number(mid), ok))
        except InexistentItem:
            raise HTTPException(404, f"no pending task {id!r}") from None
        return {"id": id, "version": VERSION}

    return api


async def b(Qin: ReadQueue[Reviewed], Qout: WriteQueue[Out]) -> None:
    while True:
        id, r = await Qin.read()
        if VERSION == 2:
            await Qout.push(id, Out(r.n, r.ok, r.n * 2, version=2))  # type: ignore[call-arg]
        else:
            await Qout.push(id, Out(r.n, r.ok, r.n * 2))


app = App(workflow, {"a": a, "h": h, "b": b})
