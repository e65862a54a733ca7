"""A stage that raises: the item is retried with backoff, then dead-lettered (headers naming the exception,
stage and source) in the same transaction as the offsets; the stage keeps going; `dlq list` shows it and
`dlq replay` re-injects it (exactly once with --all)."""

from __future__ import annotations

import argparse
import asyncio
import time

import pytest

from pipeteer import App, Pipeline, ReadQueue, Workflow, WriteQueue
from pipeteer.runtime.dlq import cmd_dlq_list, list_dead_letters, replay_dead_letters
from pipeteer.runtime.service import Restart, StageService
from tests.integration.kafka.procs import backend_url, read_topic

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


async def test_failing_items_are_retried_then_dead_lettered(kafka_bootstrap: str, kafka_prefix: str) -> None:
    url = backend_url(kafka_bootstrap, kafka_prefix, retries=2, retry_backoff_ms=10, instance="fmt-1")
    service = StageService(app, url, restart=Restart(initial=0.01, maximum=0.05))
    try:
        for i in range(30):
            await service.queues.Qin.push(f"i{i}", i)
        service.start()
        out_topic = service.queues.Qout.topic
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(await asyncio.to_thread(read_topic, kafka_bootstrap, out_topic)) >= 27:
                if len(list_dead_letters(app, url, "fmt")) >= 3:
                    break
            await asyncio.sleep(0.3)
        outputs = await asyncio.to_thread(read_topic, kafka_bootstrap, out_topic)
        assert sorted(m.key().decode() for m in outputs) == sorted(f"i{i}" for i in range(30) if i % 10 != 7)
        letters = list_dead_letters(app, url, "fmt")
        assert sorted(d.id for d in letters) == ["i17", "i27", "i7"]
        for d in letters:
            assert d.error_class == "builtins.ValueError"
            assert d.error_message == f"seven is unlucky: {d.id[1:]}"
            assert "raise ValueError" in d.stacktrace
            assert d.stage == "fmt" and d.source_topic.endswith("fmt.input") and d.source_offset >= 0
            assert d.attempts == 3
            assert calls[int(d.id[1:])] == 3  # the first try and 2 retries
        assert service.metrics.dead_letters.labels("fmt")._value.get() == 3
    finally:
        await service.stop()
    # replay --all re-injects each once, even when run twice; --id re-injects one on demand
    first = replay_dead_letters(app, url, "fmt", all=True)
    assert sorted(d.id for d in first) == ["i17", "i27", "i7"]
    assert replay_dead_letters(app, url, "fmt", all=True) == []
    assert [d.id for d in replay_dead_letters(app, url, "fmt", ids=["i7"])] == ["i7"]
    source = letters[0].source_topic
    keys = [m.key().decode() for m in await asyncio.to_thread(read_topic, kafka_bootstrap, source)]
    assert sorted(keys) == sorted([f"i{i}" for i in range(30)] + ["i7", "i17", "i27", "i7"])
    args = argparse.Namespace(app=app, backend=url, stage="fmt", json=False, stacktrace=False)
    assert cmd_dlq_list(args) == 0
