"""The plan of a workflow, and the one answer it gives the wiring, the Kafka backend and the compiler."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from pipeteer import Pipeline, Workflow
from pipeteer.compile import TopologyConfig, build_topology
from pipeteer.errors import ConfigError, RoutingError
from pipeteer.plan import INPUT, OUTPUT_QUEUE, Plan
from pipeteer.queues.base import BaseQueue
from pipeteer.queues.kafka import KafkaBackend
from pipeteer.queues.memory import MemoryBackend
from pipeteer.spec import OUTPUT
from pipeteer.wiring import make_queues
from tests.apps.nested import Checked, Done, Raw, Second, app, nested


def test_a_nested_workflow_entry_reads_its_workflow_queue() -> None:
    plan = Plan.of(nested)
    assert [q.path for q in plan.queues] == [INPUT, ("review",), ("review", "second"), OUTPUT_QUEUE]
    assert plan.readers() == {
        INPUT: ("triage",),
        ("review",): ("review", "first"),
        ("review", "second"): ("review", "second"),
    }
    assert plan.reader(OUTPUT_QUEUE) is None
    assert plan.queue_of[("review",)] == plan.queue_of[("review", "first")] == ("review",)
    assert [s.name for s in plan.stages] == ["triage", "review/first", "review/second"]


def test_routes_cross_workflow_boundaries() -> None:
    plan = Plan.of(nested)
    assert plan.destination((), Checked) == ("review/first", ("review",))
    assert plan.destination(("review",), Second) == ("review/second", ("review", "second"))
    # the inner workflow's output, routed by the outer one
    assert plan.destination(("review",), Done) == (OUTPUT, OUTPUT_QUEUE)
    routes = {(r.source, r.Type): (r.target, r.queue) for r in plan.routes}
    assert routes[("<input>", Raw)] == ("triage", INPUT)
    assert routes[("review/first", Done)] == (OUTPUT, OUTPUT_QUEUE)


def test_bad_questions_name_what_there_is() -> None:
    plan = Plan.of(nested)
    with pytest.raises(
        RoutingError, match=r"stage 'triage': item 'x' became a int, which no stage of workflow 'nested'"
    ):
        plan.destination((), int, source="triage", id="x")
    with pytest.raises(
        ConfigError, match=r"no queue 'nope' \(queues: input, review, review/second, output\)"
    ):
        plan.reader(("nope",))
    with pytest.raises(
        ConfigError, match=r"no stage 'review/third' \(stages: triage, review/first, review/second\)"
    ):
        plan.stage("review/third")


def test_wiring_backend_and_compiler_give_the_plan_s_answer() -> None:
    plan = Plan.of(nested)
    made: list[tuple[str, ...]] = []
    memory = MemoryBackend()

    def make_queue(Type: Any, path: Sequence[str], /) -> BaseQueue[Any]:
        made.append(tuple(path))
        return memory.make_queue(Type, path)

    queues = make_queues(make_queue(Raw, INPUT), make_queue(Done, OUTPUT_QUEUE), nested, make_queue)
    assert sorted(made) == sorted(q.path for q in plan.queues)  # one queue each, no other
    url = "kafka://b:1?prefix=p"
    kafka = KafkaBackend.from_url(url, workflow_name="nested", env={})
    kafka.bind(plan)
    topology = build_topology(app, TopologyConfig.of_backend(url, env={}), app_ref="x:app")
    for stage in plan.stages:
        assert queues.stage_queue(stage.name) is memory.queues[stage.queue]  # wiring
        assert kafka.reader_of(stage.queue) == stage.path  # the backend's consumer group
        assert topology.stage(stage.name).input_topic == kafka.make_queue(stage.stage.Tin, stage.queue).topic
    readers = {t.name: t.reader for t in topology.topics if t.kind == "data"}
    assert readers == {
        kafka.names.queue(q.path): None if q.reader is None else "/".join(q.reader) for q in plan.queues
    }


def test_a_stage_may_not_take_the_name_of_the_workflow_s_own_queues() -> None:
    clash = Workflow(
        int, str, pipelines={"first": Pipeline(int, float), "output": Pipeline(float, str)}, name="w"
    )
    with pytest.raises(
        ConfigError,
        match="stage 'output' would read the queue named 'output', which is the workflow's output",
    ):
        Plan.of(clash)
