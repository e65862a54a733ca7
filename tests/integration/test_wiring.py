"""Stage semantics on every backend: a stage's push moves the item on atomically; errors name what was wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pipeteer import InexistentItem, Pipeline, RoutingError, ValueTypeError, Workflow, Wrapped, connect
from pipeteer.queues.base import BaseQueue


@dataclass
class Todo:
    text: str


@dataclass
class Checked:
    text: str
    words: int


@dataclass
class Done:
    text: str
    words: int
    ok: bool


@dataclass
class Stray:
    x: int


def post_count(t: Todo, n: int | None):  # unannotated return: checked at run time
    return Checked(t.text, n) if n is not None else Stray(0)


def post_check(c: Checked, ok: bool) -> Done | Todo:
    return Done(c.text, c.words, ok) if ok else Todo(c.text + "!")


wf = Workflow(
    Todo,
    Done,
    pipelines={
        "count": Wrapped(Todo, Pipeline(str, int), pre=lambda t: t.text, post=post_count),
        "check": Wrapped(Checked, Pipeline(int, bool), pre=lambda c: c.words, post=post_check),
    },
    name="words",
)


async def test_stage_push_moves_item_and_pop_is_a_noop(backend_url: str) -> None:
    qs = connect(wf, backend_url)
    await qs.Qin.push("a", Todo("hello world"))
    count = qs["count"]["internal"]
    id, text = await count["Qin"].read()
    assert (id, text) == ("a", "hello world")
    await count["Qout"].push(id, len(text.split()))
    await count["Qin"].pop(id)  # the page's trailing pop: harmless
    assert await qs.Qin.keys() == []
    assert await qs["check"]["Qin"].items() == [("a", Checked("hello world", 2))]
    with pytest.raises(InexistentItem):
        await count["Qin"].pop(id)  # a second pop of a done item is an error again


async def test_routing_back_to_an_earlier_stage_and_to_output(backend_url: str) -> None:
    qs = connect(wf, backend_url)
    await qs.Qin.push("a", Todo("x"))
    await qs["count"]["internal"]["Qout"].push("a", 1)
    check = qs["check"]["internal"]
    assert await check["Qin"].items() == [("a", 1)]
    await check["Qout"].push("a", False)
    assert await qs.Qin.items() == [("a", Todo("x!"))]
    await qs["count"]["internal"]["Qout"].push("a", 1)
    await check["Qout"].push("a", True)
    assert await qs.Qout.items() == [("a", Done("x!", 1, True))]


async def test_wrong_output_type_names_stage_id_and_types(backend_url: str) -> None:
    qs = connect(wf, backend_url)
    await qs.Qin.push("a", Todo("x"))
    with pytest.raises(ValueTypeError) as e:
        await qs["count"]["internal"]["Qout"].push("a", "three")
    assert str(e.value) == "stage 'count': item 'a' output is a str, expected int | None"
    assert await qs.Qin.keys() == ["a"]


async def test_unroutable_post_result_changes_nothing(backend_url: str) -> None:
    qs = connect(wf, backend_url)
    await qs.Qin.push("a", Todo("x"))
    with pytest.raises(RoutingError) as e:
        await qs["count"]["internal"]["Qout"].push("a", None)
    assert "stage 'count': item 'a' became a Stray, which no stage of workflow 'words' accepts" in str(e.value)
    assert "(accepted: Todo, Checked; output: Done)" in str(e.value)
    assert await qs.Qin.items() == [("a", Todo("x"))]
    assert await qs["check"]["Qin"].keys() == [] and await qs.Qout.keys() == []


async def test_unknown_id_raises_inexistent(backend_url: str) -> None:
    qs = connect(wf, backend_url)
    with pytest.raises(InexistentItem):
        await qs["check"]["internal"]["Qout"].push("nope", True)


def post_verdict(c: Checked, ok: bool) -> Done:
    return Done(c.text, c.words, ok)


async def test_nested_workflow_moves_between_levels(backend_url: str) -> None:
    check_stage = Wrapped(Checked, Pipeline(int, bool), pre=lambda c: c.words, post=post_verdict)
    inner = Workflow(Checked, Done, pipelines={"check": check_stage}, name="inner")
    outer = Workflow(Todo, Done, pipelines={"count": wf.pipelines["count"], "review": inner}, name="outer")
    qs = connect(outer, backend_url)
    await qs.Qin.push("a", Todo("one two"))
    await qs["count"]["internal"]["Qout"].push("a", 2)  # into the sub-workflow's entry stage
    check = qs.stage("review/check")["internal"]
    assert await check["Qin"].items() == [("a", 2)]
    await check["Qout"].push("a", False)  # out of the sub-workflow, to the outer output
    assert await qs.Qout.items() == [("a", Done("one two", 2, False))]
    assert await check["Qin"].keys() == []


def test_an_unknown_stage_or_a_queue_of_ones_own_is_a_pipeteer_error(backend_url: str) -> None:
    from pipeteer import ConfigError, PipeteerError, QueueKV, make_queues
    from pipeteer.errors import NotABackendQueue, UnknownStage

    inner = Workflow(Checked, Done, pipelines={"check": Pipeline(Checked, Done)}, name="inner")
    outer = Workflow(Todo, Done, pipelines={"count": Pipeline(Todo, Checked), "review": inner}, name="outer")
    qs = connect(outer, backend_url)
    for path in ("review/nope", ("nope",), "count/x"):
        with pytest.raises(UnknownStage) as e:  # (a KeyError too, as it was)
            qs.stage(path)
        assert isinstance(e.value, KeyError) and isinstance(e.value, ConfigError)
        assert "workflow 'outer' has no stage" in str(e.value) and "(stages: count, review/check)" in str(e.value)

    def make_queue(Type: type, path: object) -> Any:  # a make_queue of one's own, giving views
        return QueueKV.memory(Type).map(lambda x: x)

    own = make_queues(make_queue(Todo, ["input"]), QueueKV.memory(Done), outer, make_queue)
    with pytest.raises(NotABackendQueue, match=r"stage 'count': its queue .* is not a backend queue") as raised:
        own.stage_queue("count")
    assert isinstance(raised.value, TypeError) and isinstance(raised.value, PipeteerError)


async def test_plain_pipeline_stage_moves_too(backend_url: str) -> None:
    plain = Workflow(Todo, Checked, pipelines={"count": Pipeline(Todo, Checked)}, name="plain")
    qs = connect(plain, backend_url)
    await qs.Qin.push("a", Todo("a b c"))
    stage = qs["count"]
    id, todo = await stage["Qin"].read()
    await stage["Qout"].push(id, Checked(todo.text, 3))
    await stage["Qin"].pop(id)
    assert await qs.Qin.keys() == [] and await qs.Qout.items() == [("a", Checked("a b c", 3))]


async def test_an_item_completed_elsewhere_is_not_output_twice(backend_url: str) -> None:
    """A plain stage read an item that another process of the stage then completed: its push raises
    `InexistentItem` (the service takes it as lost) instead of writing the output a second time."""
    plain = Workflow(Todo, Checked, pipelines={"count": Pipeline(Todo, Checked)}, name="plain")
    qs = connect(plain, backend_url)
    await qs.Qin.push("a", Todo("a b c"))
    stage = qs["count"]
    id, todo = await stage["Qin"].read()
    output = qs.Qout
    assert isinstance(output, BaseQueue)
    await qs.stage_queue("count").move(id, output, Checked("elsewhere", 1))  # as another process would
    with pytest.raises(InexistentItem):
        await stage["Qout"].push(id, Checked(todo.text, 3))
    assert await qs.Qout.items() == [("a", Checked("elsewhere", 1))]
    await stage["Qout"].push("new", Checked("not read here", 0))  # an item the stage makes: pushed as it is
    assert await qs.Qout.keys() == ["a", "new"]
