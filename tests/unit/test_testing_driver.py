"""The test driver users run in their own unit tests: deterministic, in memory, no servers."""

from __future__ import annotations

import pytest

from pipeteer import App, ReadQueue, StageError, WriteQueue
from pipeteer.testing import TestDriver
from tests.apps.review import Doc, Draft, Published, app, review_api, workflow


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
        assert await t.outputs() == {"a": Published("hello", True)}
        await t.run_until_idle()  # the rejected one went back and is summarized again
        assert await t.pending("review") == {"b": Draft("bye now (again)", "bye")}
        await t.complete("review", "b", True)
        assert await t.outputs() == {"a": Published("hello", True), "b": Published("bye", True)}


async def test_a_failing_stage_surfaces_in_the_driver() -> None:
    async def broken(Qin: ReadQueue[str], Qout: WriteQueue[str]) -> None:
        id, _ = await Qin.read()
        raise RuntimeError(f"cannot summarize {id}")

    async with TestDriver(App(workflow, {"summarize": broken, "review": review_api})) as t:
        await t.push("x", Doc("boom"))
        with pytest.raises(StageError, match="stage 'summarize' failed: RuntimeError\\('cannot summarize x'\\)"):
            await t.run_until_idle()


async def test_driver_refuses_to_step_web_stages() -> None:
    async with TestDriver(app) as t:
        with pytest.raises(Exception, match="'review' is a web stage"):
            await t.step("review")
