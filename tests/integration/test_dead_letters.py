"""A stage that keeps failing on an item: other items go on, the item is retried, then dead-lettered."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys

import pytest

from pipeteer import App, Pipeline, ReadQueue, Workflow, WriteQueue
from pipeteer.queues.base import BaseQueue, Retry
from pipeteer.runtime.service import Restart, StageService

attempts: dict[str, int] = {}

wf = Workflow(int, str, pipelines={"fmt": Pipeline(int, str)}, name="fmt")


async def fmt(Qin: ReadQueue[int], Qout: WriteQueue[str]) -> None:
    while True:
        id, n = await Qin.read()
        attempts[id] = attempts.get(id, 0) + 1
        if n < 0:
            raise ValueError(f"cannot format {n}")
        if n == 0 and attempts[id] < 3:
            raise ConnectionError("flaky")  # succeeds on the third attempt
        await Qout.push(id, f"#{n}")
        await Qin.pop(id)


app = App(wf, {"fmt": fmt})


async def test_poison_item_is_dead_lettered_and_others_flow(backend_url: str) -> None:
    attempts.clear()
    service = StageService(app, backend_url, restart=Restart(initial=0.01), retry=Retry(attempts=3, initial=0.02))
    qs = service.queues
    await qs.Qin.push("bad", -1)
    await qs.Qin.push("flaky", 0)
    for i in range(1, 6):
        await qs.Qin.push(f"ok{i}", i)
    service.start()
    try:
        for _ in range(500):
            if len(await qs.Qout.keys()) == 6:
                break
            await asyncio.sleep(0.01)
        for _ in range(500):
            if not await qs.Qin.keys():
                break
            await asyncio.sleep(0.01)
    finally:
        await service.stop()
    assert dict(await qs.Qout.items()) == {"flaky": "#0", **{f"ok{i}": f"#{i}" for i in range(1, 6)}}
    assert attempts["bad"] == 3 and attempts["flaky"] == 3
    queue = qs.Qin
    assert isinstance(queue, BaseQueue)
    letters = queue.dead_letters()  # type: ignore[attr-defined]
    assert [(d.id, d.value, d.error_class, d.error_message, d.attempts) for d in letters] == [
        ("bad", -1, "ValueError", "cannot format -1", 3)
    ]
    assert "raise ValueError" in letters[0].stacktrace
    assert await qs.Qin.keys() == []
    # the service counts them on every backend, as the Kafka engine does
    sample = service.metrics.registry.get_sample_value
    assert sample("pipeteer_dead_letters_total", {"workflow": "fmt", "stage": "fmt"}) == 1.0
    assert sample("pipeteer_items_failed_total", {"workflow": "fmt", "stage": "fmt"}) == 5.0  # 3 bad + 2 flaky


async def test_the_oldest_pending_age_is_measured_on_every_backend(backend_url: str) -> None:
    service = StageService(App(wf, {"fmt": fmt}), backend_url)
    await service.queues.Qin.push("waiting", 1)  # the stage is not started: it waits
    await asyncio.sleep(0.3)
    service.watchers.append(asyncio.create_task(service._watch_oldest()))
    try:
        sample = service.metrics.registry.get_sample_value
        labels = {"workflow": "fmt", "stage": "fmt"}
        for _ in range(100):
            if (sample("pipeteer_oldest_pending_age_seconds", labels) or 0) > 0:
                break
            await asyncio.sleep(0.02)
        assert 0.3 <= (sample("pipeteer_oldest_pending_age_seconds", labels) or 0) < 30
        assert sample("pipeteer_dead_letters_total", labels) == 0.0  # exported from the start
    finally:
        await service.stop()


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
async def test_dead_letters_listed_and_replayed_from_the_cli(backend_url: str) -> None:
    attempts.clear()
    service = StageService(app, backend_url, restart=Restart(initial=0.01), retry=Retry(attempts=2, initial=0.01))
    await service.queues.Qin.push("bad", -7)
    service.start()
    try:
        for _ in range(500):
            if not await service.queues.Qin.keys():
                break
            await asyncio.sleep(0.01)
    finally:
        await service.stop()
    cli = [sys.executable, "-m", "pipeteer", "dlq"]
    ref = ["tests.integration.test_dead_letters:app", "--backend", backend_url, "--stage", "fmt"]
    listed = subprocess.run([*cli, "list", *ref], capture_output=True, text=True, check=True)
    assert "bad" in listed.stdout and "ValueError: cannot format -7" in listed.stdout and "attempts=2" in listed.stdout
    as_json = subprocess.run([*cli, "list", *ref, "--json"], capture_output=True, text=True, check=True)
    [row] = json.loads(as_json.stdout)
    assert (row["id"], row["error_class"], row["attempts"], row["value"]) == ("bad", "ValueError", 2, "-7")
    replayed = subprocess.run([*cli, "replay", *ref, "--all"], capture_output=True, text=True, check=True)
    assert "replayed bad" in replayed.stdout
    assert await service.queues.Qin.items() == [("bad", -7)]
    again = subprocess.run([*cli, "list", *ref], capture_output=True, text=True, check=True)
    assert "no dead letters" in again.stdout


async def test_records_of_an_unknown_writer_schema_are_said_once_counted_and_shown(
    backend_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A producer whose state class has another schema that the stage cannot read (another name, another
    version): each of its records is held where it is (pending, never a dead letter, never the end of a
    listing); the stage serves the others, logs one error naming both schemas, counts every record, and
    its /readyz and /metrics show them."""
    import logging

    import httpx

    from pipeteer.codec import codec_for, unknown_writers

    @dataclasses.dataclass
    class Foreign:  # what another producer writes to the stage's input
        text: str

    unknown_writers.clear()
    service = StageService(app, backend_url, restart=Restart(initial=0.01), retry=Retry(attempts=2, initial=0.01))
    queue = service.queues.stage_queue("fmt")
    own = queue.codec
    queue.codec = codec_for(Foreign, namespace="elsewhere")  # the other producer's encoding
    for i in range(3):
        await queue._push(f"foreign{i}", Foreign("not a number"))
    queue.codec = own
    await service.queues.Qin.push("ok", 7)
    with caplog.at_level(logging.ERROR, logger="pipeteer.codec"):
        service.start()
        try:
            for _ in range(500):
                if len(queue.held()) == 3 and await service.queues.Qout.keys():
                    break
                await asyncio.sleep(0.01)
            listed = await queue.items()  # the listing goes on past them
            held = queue.held()
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.root), base_url="http://t") as c:
                ready = (await c.get("/readyz")).json()
                metrics = (await c.get("/metrics")).text
        finally:
            await service.stop()
    assert dict(await service.queues.Qout.items()) == {"ok": "#7"}  # the others went on
    assert queue.dead_letters() == [] and listed == []
    assert sorted(await queue.keys()) == ["foreign0", "foreign1", "foreign2"]  # kept, listed by id
    assert sorted(h.id for h in held) == ["foreign0", "foreign1", "foreign2"]
    foreign = codec_for(Foreign, namespace="elsewhere").fingerprint.hex()
    errors = [r.getMessage() for r in caplog.records if r.name == "pipeteer.codec"]
    assert len(errors) == 1 and foreign in errors[0] and own.describe() in errors[0], errors
    (shown,) = ready["unknown_writer_schemas"]
    assert shown["stage"] == "fmt" and shown["writer_fingerprint"] == foreign and shown["records"] == 3
    assert shown["reader"] == own.describe()
    assert "first_error" not in shown  # /readyz answers without credentials: no item ids or paths there
    line = f'pipeteer_unknown_writer_records_total{{stage="fmt",workflow="fmt",writer_fingerprint="{foreign}"}} 3.0'
    assert line in metrics
    assert 'pipeteer_held_items{stage="fmt",workflow="fmt"} 3.0' in metrics
    assert ready["ready"] is True  # the stage serves everything else it can
    (held_shown,) = ready["held"]
    assert (held_shown["stage"], held_shown["items"], held_shown["writer_fingerprints"]) == ("fmt", 3, [foreign])
    unknown_writers.clear()
