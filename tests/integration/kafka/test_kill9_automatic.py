"""5,000 records through one automatic stage, 100 per transaction, killed with SIGKILL 3 times mid-stream.

Nothing may be lost or output twice in read_committed output, and the stage's committed input
offsets must end equal to the input's end offsets.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from pipeteer.spec import names
from tests.integration.kafka.procs import (
    StageProcess,
    backend_url,
    committed_offsets,
    end_offsets,
    push_copy_items,
    read_topic,
)
from tests.kafka_broker import Broker

pytestmark = pytest.mark.slow

N = 5000


def test_automatic_stage_survives_kill9(kafka_broker: Broker, kafka_prefix: str, tmp_path: Path) -> None:
    kafka_bootstrap = kafka_broker.bootstrap
    url = backend_url(kafka_broker, kafka_prefix, commit_records=100, commit_interval_ms=200)
    asyncio.run(push_copy_items(url, N))
    out_topic = names.queue_topic("copy", ["output"], kafka_prefix)
    in_topic = names.queue_topic("copy", ["input"], kafka_prefix)
    stage = StageProcess(
        "tests.integration.kafka.apps:copy_app", "copy", url, "copy-1", tmp_path, env={"SLOW_SECONDS": "0.0005"}
    )
    rng = random.Random(4)
    kill_at = sorted(rng.sample(range(300, N - 500), 3))
    stage.start()
    try:
        deadline = time.monotonic() + 240
        seen = 0
        while seen < N and time.monotonic() < deadline:
            seen = len(read_topic(kafka_bootstrap, out_topic)) if _exists(kafka_bootstrap, out_topic) else 0
            if kill_at and seen >= kill_at[0]:
                kill_at.pop(0)
                time.sleep(rng.uniform(0, 0.3))  # land anywhere inside a transaction
                stage.kill9()
                stage.start()
            time.sleep(0.2)
        assert not kill_at, f"the stage finished before every kill was done (left: {kill_at})"
        assert stage.starts == 4
        records = read_topic(kafka_bootstrap, out_topic)
        keys = [m.key().decode() for m in records]
        assert len(keys) == N, f"{len(keys)} outputs for {N} inputs ({len(set(keys))} distinct)"
        assert set(keys) == {f"item-{i}" for i in range(N)}
        # committed offsets catch up with the input's end (the last commit may be a moment behind)
        group = names.consumer_group("copy", ["copy"], kafka_prefix)
        ends = end_offsets(kafka_bootstrap, in_topic)
        deadline = time.monotonic() + 10
        while committed_offsets(kafka_bootstrap, group, in_topic) != ends and time.monotonic() < deadline:
            time.sleep(0.2)
        assert committed_offsets(kafka_bootstrap, group, in_topic) == ends
    finally:
        stage.stop()


def _exists(bootstrap: str, topic: str) -> bool:
    from confluent_kafka.admin import AdminClient

    return topic in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
