"""The three-stage chain workflow on Kafka: 20,000 items, 2 instances per stage, each stage's instances
killed with SIGKILL twice, and an extra instance per stage added then removed during the run
(partition rebalances). Every input must give exactly one output, with the right state.

`PIPETEER_TEST_CHAIN_ITEMS` shrinks the run (default 20000).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from pipeteer.codec import codec_for
from pipeteer.queues.kafka import KafkaBackend
from pipeteer.spec import names
from tests.apps.chain import Raw, Result, workflow
from tests.integration.kafka.procs import StageProcess, backend_url, read_topic, unconsumed, wait_stable
from tests.kafka_broker import Broker

pytestmark = pytest.mark.slow

N = int(os.environ.get("PIPETEER_TEST_CHAIN_ITEMS", "20000"))
STAGES = ("square", "negate", "sum")
APP = "tests.apps.chain:app"


async def push_raw(url: str, n: int, seconds: float) -> None:
    """Push the inputs spread over `seconds`, so every stage is busy while the kills happen."""
    backend = KafkaBackend.from_url(url, workflow_name=workflow.name, env={})
    q = backend.make_queue(Raw, ["input"])
    step = 500
    try:
        started = time.monotonic()
        for k, start in enumerate(range(0, n, step)):
            await asyncio.gather(*(q.push(f"n{i}", Raw(i)) for i in range(start, min(start + step, n))))
            await asyncio.sleep(max(0.0, started + seconds * (k + 1) * step / n - time.monotonic()))
    finally:
        backend.close()


def test_chain_workflow_survives_kills_and_rebalances(kafka_broker: Broker, kafka_prefix: str, tmp_path: Path) -> None:
    kafka_bootstrap = kafka_broker.bootstrap
    url = backend_url(kafka_broker, kafka_prefix, commit_records=200)
    slow = {"CHAIN_SLOW_SECONDS": "0.0003"}
    procs = {
        (s, i): StageProcess(APP, s, url, f"{s}-{i}", tmp_path, env=slow) for s in STAGES for i in (1, 2)
    }
    extra = {
        s: StageProcess(APP, s, url, f"{s}-extra", tmp_path, env={**slow, "PIPETEER_STATIC_MEMBERSHIP": "false"})
        for s in STAGES
    }
    pusher = threading.Thread(target=lambda: asyncio.run(push_raw(url, N, 10.0)), daemon=True)
    # (seconds after start, action): two kills per stage (one per instance), one extra instance per stage
    plan: list[tuple[float, str, str, int]] = []
    for k, s in enumerate(STAGES):
        plan += [
            (1.0 + k * 0.7, "kill", s, 1),
            (2.5 + k * 0.6, "add", s, 0),
            (5.0 + k * 0.7, "kill", s, 2),
            (7.5 + k * 0.5, "remove", s, 0),
        ]
    plan.sort()
    members = dict.fromkeys(STAGES, 2)
    try:
        if kafka_broker.quirky:  # noida-db: one instance at a time, each joins a formed group (NOIDA_CLIENT_PROPS)
            for s in STAGES:
                for i in (1, 2):
                    procs[(s, i)].start().wait_ready()
                wait_stable(kafka_bootstrap, names.consumer_group(workflow.name, [s], kafka_prefix), 2)
        else:  # Apache Kafka: every instance at once
            for p in procs.values():
                p.start()
            for p in procs.values():
                p.wait_ready()
        pusher.start()
        started = time.monotonic()
        for at, action, s, i in plan:
            time.sleep(max(0.0, started + at - time.monotonic()))
            group = names.consumer_group(workflow.name, [s], kafka_prefix)
            if kafka_broker.quirky:
                wait_stable(kafka_bootstrap, group, members[s])  # see wait_stable: noida-db's quirk, not the product's
            if action == "kill":
                procs[(s, i)].kill9()
                procs[(s, i)].start()
            elif action == "add":
                extra[s].start()
                members[s] += 1
            else:
                extra[s].stop()
                members[s] -= 1
        pusher.join(120)
        assert not pusher.is_alive()
        out_topic = names.queue_topic(workflow.name, ["output"], kafka_prefix)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len({m.key() for m in read_topic(kafka_bootstrap, out_topic)}) < N:
            time.sleep(1.0)
        assert all(p.starts == (2 if i == 1 or i == 2 else 1) for (s, i), p in procs.items())
        outputs = read_topic(kafka_bootstrap, out_topic)
        keys = [m.key().decode() for m in outputs]
        assert len(set(keys)) == N, f"{N - len(set(keys))} of {N} items lost"
        if len(keys) != N:  # say where the duplicates first appear
            where = {}
            for q in ("negate", "sum", "output"):
                ks = [m.key() for m in read_topic(kafka_bootstrap, names.queue_topic(workflow.name, [q], kafka_prefix))]
                where[q] = len(ks) - len(set(ks))
            dup = sorted({k for k in keys if keys.count(k) > 1})[:5] if len(keys) < 30000 else []
            raise AssertionError(f"{len(keys) - N} duplicate outputs; duplicates per topic {where}; e.g. {dup}")
        codec = codec_for(Result)
        assert all(codec.decode(m.value()) == Result(int(m.key()[1:]), int(m.key()[1:])) for m in outputs)
        for stage, queue in (("square", "input"), ("negate", "negate"), ("sum", "sum")):
            topic = names.queue_topic(workflow.name, [queue], kafka_prefix)
            group = names.consumer_group(workflow.name, [stage], kafka_prefix)
            deadline = time.monotonic() + 10
            while unconsumed(kafka_bootstrap, group, topic) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert unconsumed(kafka_bootstrap, group, topic) == 0, f"stage {stage} left input uncommitted"
    finally:
        for p in [*procs.values(), *extra.values()]:
            p.stop()
