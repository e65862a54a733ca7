"""The workflow of the broker-fault suite: Job -> a -> Scored -> h (a person) -> Checked -> b -> Done.

`a` and `b` are automatic; `h` is a web page a test drives as reviewers would (`GET /h/tasks`,
`POST /h/decide?id=...&ok=...`, answered once the decision is durable). The job `POISON` makes `a`
fail every time: it must end in a's dead-letter topic exactly once, whatever the faults.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, HTTPException

from pipeteer import App, InexistentItem, Pipeline, ReadQueue, Workflow, WriteQueue

POISON = -1


@dataclass
class Job:
    n: int


@dataclass
class Scored:
    n: int
    score: int


@dataclass
class Checked:
    n: int
    score: int
    ok: bool


@dataclass
class Done:
    n: int
    score: int
    ok: bool
    total: int


workflow = Workflow(
    Job,
    Done,
    pipelines={"a": Pipeline(Job, Scored), "h": Pipeline(Scored, Checked), "b": Pipeline(Checked, Done)},
    name="faults",
)


def score(n: int) -> int:
    return n * 3 + 1


async def a(Qin: ReadQueue[Job], Qout: WriteQueue[Scored]) -> None:
    while True:
        id, job = await Qin.read()
        if job.n == POISON:
            raise ValueError(f"job {id!r} is poison")
        await Qout.push(id, Scored(job.n, score(job.n)))


def h(Qin: ReadQueue[Scored], Qout: WriteQueue[Checked]) -> FastAPI:
    """The reviewers' page: the pending tasks, and a decision on one (404 when it is not pending)."""
    api = FastAPI()

    @api.get("/tasks")
    async def tasks() -> list[str]:
        return list(await Qin.keys())

    @api.post("/decide")
    async def decide(id: str, ok: bool) -> dict[str, object]:
        try:
            s = await Qin.read(id)
            await Qout.push(id, Checked(s.n, s.score, ok))
        except InexistentItem:
            raise HTTPException(404, f"no pending task {id!r}") from None
        return {"id": id}

    return api


async def b(Qin: ReadQueue[Checked], Qout: WriteQueue[Done]) -> None:
    while True:
        id, c = await Qin.read()
        await Qout.push(id, Done(c.n, c.score, c.ok, c.n + c.score))


app = App(workflow, {"a": a, "h": h, "b": b})
