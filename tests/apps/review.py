"""A workflow with an automatic stage and a human (web) stage, for the driver and service tests."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, HTTPException

from pipeteer import App, InexistentItem, Pipeline, ReadQueue, Workflow, Wrapped, WriteQueue


@dataclass
class Doc:
    text: str


@dataclass
class Draft:
    text: str
    summary: str


@dataclass
class Published:
    summary: str
    approved: bool


def post_summarize(d: Doc, s: str) -> Draft:
    return Draft(d.text, s)


def post_review(d: Draft, ok: bool) -> Published | Doc:
    return Published(d.summary, ok) if ok else Doc(d.text + " (again)")  # a rejected draft is redone


workflow = Workflow(
    Doc,
    Published,
    pipelines={
        "summarize": Wrapped(Doc, Pipeline(str, str), pre=lambda d: d.text, post=post_summarize),
        "review": Wrapped(Draft, Pipeline(str, bool), pre=lambda d: d.summary, post=post_review),
    },
    name="news",
)


async def summarize(Qin: ReadQueue[str], Qout: WriteQueue[str]) -> None:
    while True:
        id, text = await Qin.read()
        await Qout.push(id, text.split()[0])
        await Qin.pop(id)


def review_api(Qin: ReadQueue[str], Qout: WriteQueue[bool]) -> FastAPI:
    api = FastAPI()

    @api.get("/tasks")
    async def tasks() -> list[dict[str, str]]:
        return [{"id": id, "summary": s} async for id, s in Qin.items()]

    @api.post("/review")
    async def review(id: str, ok: bool) -> dict[str, bool]:
        try:
            await Qout.push(id, ok)
        except InexistentItem:
            raise HTTPException(404, f"no pending task {id!r}") from None
        return {"ok": ok}

    return api


app = App(workflow, {"summarize": summarize, "review": review_api})
