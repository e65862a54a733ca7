"""The project page's path (`make_queues(Qin, Qout, workflow, backend.make_queue)`) and
`pipeteer.connect` read a workflow with the same consumer groups and changelogs on Apache Kafka:
both bind the backend to the workflow's plan, so the entry stage reads `input` with the group of
the stage (`<prefix>.calc.stage.square`), never one named after the queue (`...stage.input`).
Checked from the backend's names and from the groups and topics the broker has after each path read
an item (issue 23, item 1)."""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka.admin import AdminClient

from pipeteer import Pipeline, Workflow, make_queues
from pipeteer.plan import INPUT, OUTPUT_QUEUE, Plan
from pipeteer.queues.kafka import KafkaBackend
from pipeteer.runtime.connect import connect
from tests.integration.kafka.procs import backend_url
from tests.kafka_broker import Broker

workflow = Workflow(int, str, pipelines={"square": Pipeline(int, float), "fmt": Pipeline(float, str)}, name="calc")


def names(backend: KafkaBackend) -> dict[tuple[str, ...], tuple[str, str]]:
    """Each queue of the workflow: the consumer group reading it and that stage's changelog topic."""
    out = {}
    for q in Plan.of(workflow).queues:
        stage = backend.reader_of(q.path)
        out[q.path] = (backend.names.group(stage), backend.names.changelog(stage))
    return out


def on_broker(bootstrap: str, prefix: str) -> tuple[set[str], set[str]]:
    """The consumer groups and the changelog topics of this test's prefix the broker has."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    groups = {g.group_id for g in admin.list_consumer_groups(request_timeout=10).result(timeout=30).valid}
    topics = set(admin.list_topics(timeout=10).topics)
    return ({g for g in groups if g.startswith(prefix)},
            {t for t in topics if t.startswith(prefix) and t.endswith(".pending")})


async def read_one(queues: Any) -> tuple[str, Any]:
    return await asyncio.wait_for(queues["square"]["Qin"].read(), 60)


async def by_the_seed_path(url: str) -> dict[tuple[str, ...], tuple[str, str]]:
    backend = KafkaBackend.from_url(url, workflow_name=workflow.name, env={})
    try:
        Qin = backend.make_queue(int, INPUT)  # made before `make_queues`, as the project page does
        Qout = backend.make_queue(str, OUTPUT_QUEUE)
        queues = make_queues(Qin, Qout, workflow, backend.make_queue)
        await Qin.push("a", 3)
        assert await read_one(queues) == ("a", 3)  # left pending: the engine keeps it in its changelog
        return names(backend)
    finally:
        await asyncio.to_thread(backend.close)


async def by_connect(url: str) -> dict[tuple[str, ...], tuple[str, str]]:
    queues = connect(workflow, url, env={})
    backend = queues.backend
    assert isinstance(backend, KafkaBackend)
    try:
        assert await read_one(queues) == ("a", 3)  # the item the seed path left pending, restored
        return names(backend)
    finally:
        await asyncio.to_thread(backend.close)


def test_the_seed_path_and_connect_read_with_the_same_groups_and_changelogs(
    real_kafka: Broker, kafka_prefix: str
) -> None:
    url = backend_url(real_kafka, kafka_prefix, partitions=1)
    seed = asyncio.run(by_the_seed_path(url))
    after_seed = on_broker(real_kafka.bootstrap, kafka_prefix)
    connected = asyncio.run(by_connect(url))
    after_connect = on_broker(real_kafka.bootstrap, kafka_prefix)

    assert seed == connected
    assert seed[INPUT] == (f"{kafka_prefix}.calc.stage.square", f"{kafka_prefix}.calc.stage.square.pending")
    group, changelog = seed[INPUT]
    assert after_seed == after_connect == ({group}, {changelog}), (after_seed, after_connect)
