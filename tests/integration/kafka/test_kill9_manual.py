"""1,000 manual tasks completed over HTTP in shuffled order, with 5 kill -9 of the web stage in between.

After every restart the pending table the stage serves (restored from its changelog, plus the
input read again above the committed offsets) must equal a reference model; each completion
is emitted exactly once; a repeated or concurrent completion of one task gives one emission
and a 404 for the others.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx
import pytest

from pipeteer.spec import names
from tests.integration.kafka.apps import Done
from tests.integration.kafka.procs import StageProcess, backend_url, push_tasks, read_topic
from tests.kafka_broker import Broker

pytestmark = pytest.mark.slow

N = 1000
KILLS = 5


def listed(base: str) -> set[str]:
    return {t["id"] for t in httpx.get(base + "/answer/tasks", timeout=30).json()}


def wait_listing(base: str, expected: set[str], timeout: float = 30) -> set[str]:
    """The stage's pending ids once they settle on `expected` (or whatever they are at the timeout)."""
    deadline = time.monotonic() + timeout
    got = listed(base)
    while got != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        got = listed(base)
    return got


async def complete(base: str, ids: list[str], concurrency: int = 50) -> dict[str, int]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def one(id: str) -> tuple[str, int]:
            async with sem:
                n = int(id.split("-")[1])
                r = await client.post("/answer/answer", params={"id": id, "value": n * 2})
                return id, r.status_code

        return dict(await asyncio.gather(*(one(id) for id in ids)))


async def race(base: str, id: str, times: int) -> list[int]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        rs = await asyncio.gather(*(client.post("/answer/answer", params={"id": id, "value": 1}) for _ in range(times)))
    return sorted(r.status_code for r in rs)


def check_service_endpoints(base: str) -> None:
    """/healthz, /readyz (assigned and restored), and the Kafka metrics of the stage on /metrics."""
    assert httpx.get(base + "/healthz").status_code == 200
    assert httpx.get(base + "/readyz").status_code == 200
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(base + "/metrics").text
        if 'pipeteer_consumer_lag{partition="0",stage="answer",workflow="tasks"}' in text:
            break
        time.sleep(0.2)
    for line in (
        'pipeteer_rebalances_total{stage="answer",workflow="tasks"} 1.0',
        f'pipeteer_pending_items{{stage="answer",workflow="tasks"}} {float(N)}',
        'pipeteer_consumer_lag{partition="0",stage="answer",workflow="tasks"}',
        'pipeteer_oldest_pending_age_seconds{stage="answer",workflow="tasks"}',
    ):
        assert line in text, f"{line!r} not in /metrics"


def test_manual_tasks_survive_kill9(kafka_broker: Broker, kafka_prefix: str, tmp_path: Path) -> None:
    kafka_bootstrap = kafka_broker.bootstrap
    url = backend_url(kafka_broker, kafka_prefix, commit_interval_ms=50)
    asyncio.run(push_tasks(url, {f"task-{i}": i for i in range(N)}))
    stage = StageProcess("tests.integration.kafka.apps:tasks_app", "answer", url, "answer-1", tmp_path).start()
    pending = {f"task-{i}" for i in range(N)}
    completed: dict[str, int] = {}
    order = sorted(pending)
    random.Random(7).shuffle(order)
    batches = [order[i :: KILLS + 1] for i in range(KILLS + 1)]
    try:
        stage.wait_ready()
        for i, batch in enumerate(batches):
            assert wait_listing(stage.base, pending) == pending, f"pending table wrong before batch {i}"
            if i == 0:
                check_service_endpoints(stage.base)
            codes = asyncio.run(complete(stage.base, batch[:-1]))
            assert set(codes.values()) == {200}, f"batch {i}: {sorted(set(codes.values()))}"
            pending -= set(codes)
            completed.update({id: int(id.split("-")[1]) * 2 for id in codes})
            # one task completed concurrently by 5 people, then once more: one 200, the rest 404
            last = batch[-1]
            assert asyncio.run(race(stage.base, last, 5)) == [200, 404, 404, 404, 404]
            assert asyncio.run(race(stage.base, last, 1)) == [404]
            pending.discard(last)
            completed[last] = 1
            if i < KILLS:
                stage.kill9()
                stage.start().wait_ready()
        assert wait_listing(stage.base, pending) == pending == set()
        out = read_topic(kafka_bootstrap, names.queue_topic("tasks", ["output"], kafka_prefix))
        keys = [m.key().decode() for m in out]
        assert len(keys) == len(set(keys)) == N, f"{len(keys)} emissions, {len(set(keys))} distinct, for {N} tasks"
        from pipeteer.codec import codec_for

        codec = codec_for(Done)
        emitted = {m.key().decode(): codec.decode(m.value()).answer for m in out}
        assert emitted == completed
    finally:
        stage.stop()
