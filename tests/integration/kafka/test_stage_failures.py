"""A stage that raises: the item is retried with backoff, then dead-lettered (headers naming the exception,
stage and source) in the same transaction as the offsets; the stage keeps going; `dlq list` shows it and
`dlq replay` re-injects it (exactly once with --all)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pipeteer import App, Pipeline, ReadQueue, Workflow, WriteQueue
from pipeteer.cli import main as cli
from pipeteer.runtime.service import Restart, StageService
from tests.integration.kafka.procs import backend_url, read_topic
from tests.kafka_broker import Broker

pytestmark = pytest.mark.slow

workflow = Workflow(int, str, pipelines={"fmt": Pipeline(int, str)}, name="fmt")
calls: dict[int, int] = {}


async def fmt(Qin: ReadQueue[int], Qout: WriteQueue[str]) -> None:
    while True:
        id, n = await Qin.read()
        calls[n] = calls.get(n, 0) + 1
        if n % 10 == 7:
            raise ValueError(f"seven is unlucky: {n}")
        await Qout.push(id, f"<{n}>")


app = App(workflow, {"fmt": fmt})


def stage_queue(service: StageService) -> Any:
    return service.queues.stage("fmt").Qin.queue


async def test_failing_items_are_retried_then_dead_lettered(
    kafka_broker: Broker, kafka_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka_bootstrap = kafka_broker.bootstrap
    url = backend_url(kafka_broker, kafka_prefix, retries=2, retry_backoff_ms=10, instance="fmt-1")
    service = StageService(app, url, restart=Restart(initial=0.01, maximum=0.05))
    q = stage_queue(service)
    try:
        for i in range(30):
            await service.queues.Qin.push(f"i{i}", i)
        service.start()
        out_topic = service.queues.Qout.topic
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(await asyncio.to_thread(read_topic, kafka_bootstrap, out_topic)) >= 27:
                if len(await asyncio.to_thread(q.dead_letters)) >= 3:
                    break
            await asyncio.sleep(0.3)
        outputs = await asyncio.to_thread(read_topic, kafka_bootstrap, out_topic)
        assert sorted(m.key().decode() for m in outputs) == sorted(f"i{i}" for i in range(30) if i % 10 != 7)
        letters = await asyncio.to_thread(q.dead_letter_topic().pending)
        assert sorted(d.id for d in letters) == ["i17", "i27", "i7"]
        for d in letters:
            assert d.error_class == "ValueError"  # named as on every backend (as a traceback does)
            assert d.error_message == f"seven is unlucky: {d.id[1:]}"
            assert "raise ValueError" in d.stacktrace
            assert d.stage == "fmt" and d.source_topic.endswith("fmt.input") and d.source_offset >= 0
            assert d.attempts == 3
            assert calls[int(d.id[1:])] == 3  # the first try and 2 retries
        assert sorted((d.id, d.value) for d in await asyncio.to_thread(q.dead_letters)) == [
            ("i17", 17), ("i27", 27), ("i7", 7)
        ]
        assert service.metrics.dead_letters.labels(app.name, "fmt")._value.get() == 3
    finally:
        await service.stop()
    ref = "tests.integration.kafka.test_stage_failures:app"
    assert await asyncio.to_thread(cli, ["dlq", "list", ref, "--backend", url, "--stage", "fmt"]) == 0
    listed = capsys.readouterr().out
    assert all(f"i{n}\t" in listed and f"seven is unlucky: {n}" in listed for n in (7, 17, 27))
    # --id re-injects one on demand; --all re-injects each not yet replayed once, even when run twice
    replay_one = ["dlq", "replay", ref, "--backend", url, "--stage", "fmt", "--id", "i7"]
    assert await asyncio.to_thread(cli, replay_one) == 0
    assert "replayed i7 -> " in capsys.readouterr().out
    assert sorted(await asyncio.to_thread(q.replay)) == ["i17", "i27", "i7"]
    assert await asyncio.to_thread(q.replay) == []
    assert await asyncio.to_thread(q.dead_letters) == []
    source = letters[0].source_topic
    keys = [m.key().decode() for m in await asyncio.to_thread(read_topic, kafka_bootstrap, source)]
    assert sorted(keys) == sorted([f"i{i}" for i in range(30)] + ["i7", "i7", "i17", "i27"])


async def test_records_of_an_unknown_writer_schema_are_held_said_once(
    kafka_broker: Broker, kafka_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another producer writes the stage's input with a schema the stage does not know: each of its
    records is held (pending, listed by id, never a dead letter: a version that knows the schema may
    come), the stage logs one error naming both schemas and goes on with the others, and its /readyz
    and /metrics count the records."""
    import dataclasses
    import logging

    import httpx

    from pipeteer.codec import codec_for, unknown_writers

    @dataclasses.dataclass
    class Foreign:
        text: str

    unknown_writers.clear()
    url = backend_url(kafka_broker, kafka_prefix, retries=0, instance="fmt-1")
    service = StageService(app, url, restart=Restart(initial=0.01, maximum=0.05))
    q = stage_queue(service)
    foreign = codec_for(Foreign, namespace="elsewhere")
    topic = service.queues.Qin.topic
    await q.backend.ensure_topics([topic])
    for i in range(4):
        await q.backend.produce(topic, f"foreign{i}", foreign.encode(Foreign("not a number")))
    await service.queues.Qin.push("ok", 3)
    try:
        with caplog.at_level(logging.ERROR, logger="pipeteer.codec"):
            service.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                outputs = await asyncio.to_thread(read_topic, kafka_broker.bootstrap, service.queues.Qout.topic)
                if outputs and len(q.held()) >= 4:
                    break
                await asyncio.sleep(0.3)
            held = q.held()
            keys = await q.keys()
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.root), base_url="http://t") as c:
                ready = (await c.get("/readyz")).json()
                metrics = (await c.get("/metrics")).text
        letters = await asyncio.to_thread(q.dead_letters)
    finally:
        await service.stop()
    assert [m.key().decode() for m in outputs] == ["ok"]
    assert letters == []
    assert sorted(h.id for h in held) == sorted(keys) == [f"foreign{i}" for i in range(4)]
    assert all(h.writer_fingerprint == foreign.fingerprint.hex() and "neither the current schema" in h.reason
               for h in held)
    assert ready["ready"] and ready["held"][0]["items"] == 4
    errors = [r.getMessage() for r in caplog.records if r.name == "pipeteer.codec"]
    assert len(errors) == 1 and foreign.fingerprint.hex() in errors[0] and "expected int" in errors[0], errors
    (shown,) = ready["unknown_writer_schemas"]
    assert (shown["stage"], shown["writer_fingerprint"], shown["records"]) == ("fmt", foreign.fingerprint.hex(), 4)
    assert f'writer_fingerprint="{foreign.fingerprint.hex()}"}} 4.0' in metrics
    unknown_writers.clear()
