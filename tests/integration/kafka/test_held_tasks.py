"""A person's pending task that this version cannot read (written by another version whose schema is
not in the workflow's catalog) is never lost: it is held, listed by id, kept across a restart (in the
stage's changelog, or its input uncommitted), and served once its writer's schema is published."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import httpx

from pipeteer.codec import codec_for
from pipeteer.runtime.service import StageService
from tests.integration.kafka.apps import Task, tasks_app
from tests.integration.kafka.procs import backend_url, read_topic
from tests.kafka_broker import Broker


@dataclasses.dataclass
class TaskV2:
    """`Task` as a later version writes it (a new field with a default): the same Avro name."""

    n: int
    note: str = "v2"


TaskV2.__qualname__ = "Task"


async def until(condition: Callable[[], Any], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("condition not met")


async def answer(service: StageService, ids: list[str]) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.root), base_url="http://t") as c:
        for id in ids:
            r = await c.post("/answer/answer", params={"id": id, "value": 1})
            assert r.status_code == 200, r.text


async def test_an_unreadable_pending_task_is_kept_across_restarts_and_served_once_readable(
    kafka_broker: Broker, kafka_prefix: str
) -> None:
    url = backend_url(kafka_broker, kafka_prefix)
    v2 = codec_for(TaskV2, namespace=Task.__module__)
    assert v2.name == codec_for(Task).name and v2.fingerprint != codec_for(Task).fingerprint
    service = StageService(tasks_app, url)
    q: Any = service.queues.stage_queue("answer")
    await q.backend.ensure_topics([q.topic])
    for i in range(3):  # written without publishing its schema (as a writer whose catalog was lost would)
        await q.backend.produce(q.topic, f"v2-{i}", v2.encode(TaskV2(i)))
    for i in range(2):
        await service.queues.Qin.push(f"v1-{i}", Task(i))
    service.start()
    try:
        await until(lambda: _true(len(q.held()) == 3 and len(q.pending_since()) == 5))
        assert sorted(id for id, _ in await q.items()) == ["v1-0", "v1-1"]  # the listing goes on past them
        assert len(await q.keys()) == 5  # every task is listed by id
        await answer(service, ["v1-0", "v1-1"])  # later items finish: the held ones below go to the changelog
    finally:
        await service.stop()

    again = StageService(tasks_app, url)  # a new instance: restored from the changelog (or the input)
    q2: Any = again.queues.stage_queue("answer")
    again.start()
    try:
        await until(lambda: _true(len(q2.held()) == 3))
        assert sorted(await q2.keys()) == [f"v2-{i}" for i in range(3)]  # kept and listed, not served
        assert await q2.items() == []
        again.backend.schema_catalog().publish([v2.schema])  # the writer's version publishes its schema
        await until(lambda: _true(q2.held() == [] and len(q2.pending_since()) == 3))
        assert sorted((id, t.n) for id, t in await q2.items()) == [(f"v2-{i}", i) for i in range(3)]
        await answer(again, [f"v2-{i}" for i in range(3)])
    finally:
        await again.stop()
    keys = [m.key().decode() for m in read_topic(kafka_broker.bootstrap, again.queues.Qout.topic)]
    assert sorted(keys) == sorted([*(f"v1-{i}" for i in range(2)), *(f"v2-{i}" for i in range(3))])  # each once


async def _true(value: bool) -> bool:
    return value
