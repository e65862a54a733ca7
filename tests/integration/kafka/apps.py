"""Apps the Kafka reliability tests run as real `pipeteer run` processes."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException

from pipeteer import App, InexistentItem, Pipeline, ReadQueue, Workflow, Wrapped, WriteQueue


@dataclass
class Item:
    n: int
    text: str


@dataclass
class Copied:
    n: int
    text: str


def post_copy(item: Item, text: str) -> Copied:
    return Copied(item.n, text)


copy_workflow = Workflow(
    Item,
    Copied,
    pipelines={"copy": Wrapped(Item, Pipeline(str, str), pre=lambda i: i.text, post=post_copy)},
    name="copy",
)


async def copy(Qin: ReadQueue[str], Qout: WriteQueue[str]) -> None:
    """The seed's automatic stage loop; `SLOW_SECONDS` per item widens the window a kill -9 lands in."""
    slow = float(os.environ.get("SLOW_SECONDS", "0"))
    while True:
        id, text = await Qin.read()
        if slow:
            time.sleep(slow)
        await Qout.push(id, text.upper())
        await Qin.pop(id)


copy_app = App(copy_workflow, {"copy": copy})


@dataclass
class Task:
    n: int


@dataclass
class Done:
    n: int
    answer: int


def post_answer(t: Task, answer: int) -> Done:
    return Done(t.n, answer)


tasks_workflow = Workflow(
    Task,
    Done,
    pipelines={"answer": Wrapped(Task, Pipeline(int, int), pre=lambda t: t.n, post=post_answer)},
    name="tasks",
)


def answer_api(Qin: ReadQueue[int], Qout: WriteQueue[int]) -> FastAPI:
    """A person's page: list the pending tasks, complete one by id (404 if it is not pending)."""
    api = FastAPI()

    @api.get("/tasks")
    async def tasks() -> list[dict[str, object]]:
        return [{"id": id, "n": n} async for id, n in Qin.items()]

    @api.post("/answer")
    async def answer(id: str, value: int) -> dict[str, int]:
        try:
            await Qout.push(id, value)
        except InexistentItem:
            raise HTTPException(404, f"no pending task {id!r}") from None
        return {"answer": value}

    return api


tasks_app = App(tasks_workflow, {"answer": answer_api})
