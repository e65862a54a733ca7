"""The test driver users run in their own unit tests: deterministic, in memory, no servers."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi import FastAPI, HTTPException

from pipeteer import App, InexistentItem, Pipeline, ReadQueue, StageError, Workflow, Wrapped, WriteQueue
from pipeteer.testing import TestDriver


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


def post_summarize(d: Doc, s: str) -> Draft:
    return Draft(d.text, s)


def post_review(d: Draft, ok: bool) -> Published | Doc:
    return Published(d.summary) if ok else Doc(d.text + " (again)")


wf = Workflow(
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


app = App(wf, {"summarize": summarize, "review": review_api})


async def test_step_moves_exactly_n_items() -> None:
    async with TestDriver(app) as t:
        for i in range(5):
            await t.push(f"d{i}", Doc(f"word{i} rest"))
        await t.step("summarize", 2)
        assert list(await t.pending("summarize")) == ["d2", "d3", "d4"]
        assert list(await t.pending("review")) == ["d0", "d1"]
        await t.run_until_idle()
        assert await t.pending("summarize") == {}
        assert len(await t.pending("review")) == 5


async def test_acting_as_the_person_over_the_web_app() -> None:
    async with TestDriver(app) as t:
        await t.push("a", Doc("hello world"))
        await t.push("b", Doc("bye now"))
        await t.run_until_idle()
        async with t.client("review") as http:
            assert (await http.get("/tasks")).json() == [{"id": "a", "summary": "hello"}, {"id": "b", "summary": "bye"}]
            assert (await http.post("/review", params={"id": "a", "ok": True})).status_code == 200
            assert (await http.post("/review", params={"id": "a", "ok": True})).status_code == 404
            assert (await http.post("/review", params={"id": "b", "ok": False})).status_code == 200
        assert await t.outputs() == {"a": Published("hello")}
        await t.run_until_idle()  # the rejected one went back and is summarized again
        assert await t.pending("review") == {"b": Draft("bye now (again)", "bye")}
        await t.complete("review", "b", True)
        assert await t.outputs() == {"a": Published("hello"), "b": Published("bye")}


async def test_a_failing_stage_surfaces_in_the_driver() -> None:
    async def broken(Qin: ReadQueue[str], Qout: WriteQueue[str]) -> None:
        id, _ = await Qin.read()
        raise RuntimeError(f"cannot summarize {id}")

    async with TestDriver(App(wf, {"summarize": broken, "review": review_api})) as t:
        await t.push("x", Doc("boom"))
        with pytest.raises(StageError, match="stage 'summarize' failed: RuntimeError\\('cannot summarize x'\\)"):
            await t.run_until_idle()


async def test_driver_refuses_to_step_web_stages() -> None:
    async with TestDriver(app) as t:
        with pytest.raises(Exception, match="'review' is a web stage"):
            await t.step("review")
