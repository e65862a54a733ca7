"""Real stage processes (`python -m pipeteer run ...`) and read_committed views of topics, for the Kafka tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeteer.queues.kafka import KafkaBackend
from pipeteer.queues.kafka.changelog import consume_to_end, watermarks
from tests.integration.kafka.apps import Item, copy_workflow
from tests.kafka_broker import Broker, free_port

ROOT = Path(__file__).resolve().parents[3]

TEST_CLIENT_PROPS = "session.timeout.ms=6000&heartbeat.interval.ms=500"
"""Kafka's default session timeout (45 s) would make every kill -9 stall its partitions that long."""

NOIDA_CLIENT_PROPS = "max.poll.interval.ms=20000"
"""On noida-db only. `max.poll.interval.ms` is also the consumer's JoinGroup timeout (plus 3 s) and
the group's rebalance timeout: noida-db sometimes never answers the JoinGroup of static members
joining a group at the same moment (seen: two stage instances started together, both waiting 60 s
and more with no answer). With the default 300 s a test would hang that long; with 20 s the
client gives up on the lost request and joins again. Apache Kafka keeps the default."""


async def push_tasks(url: str, tasks: dict[str, int]) -> None:
    """Push `Task(n)` under each id to the `tasks` workflow's input (the human-stage tests' batch)."""
    from pipeteer.queues.kafka import KafkaBackend
    from tests.integration.kafka.apps import Task, tasks_workflow

    backend = KafkaBackend.from_url(url, workflow_name=tasks_workflow.name, env={})
    q = backend.make_queue(Task, ["input"])
    try:
        await asyncio.gather(*(q.push(id, Task(n)) for id, n in tasks.items()))
    finally:
        backend.close()


def backend_url(broker: Broker, prefix: str, **options: Any) -> str:
    props = [TEST_CLIENT_PROPS, NOIDA_CLIENT_PROPS] if broker.quirky else [TEST_CLIENT_PROPS]
    query = "&".join([f"prefix={prefix}", *props, *(f"{k}={v}" for k, v in options.items())])
    return f"kafka://{broker.bootstrap}?{query}"


@dataclass
class StageProcess:
    """One `pipeteer run APP --stage NAME` instance; killed with SIGKILL by its pid, or stopped with SIGTERM."""

    app: str
    stage: str
    url: str
    instance: str
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    fixed_port: int = 0  # known before it starts (its peers are told where it is)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> StageProcess:
        self.port = self.fixed_port or free_port()
        self.starts += 1
        env = {**os.environ, "PIPETEER_INSTANCE": self.instance, **self.env}
        log = open(self.log_dir / f"{self.instance}.{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeteer", "run", self.app, "--backend", self.url,
             "--stage", self.stage, "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.instance} exited with {self.proc.returncode if self.proc else None}: see {self.log_dir}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.instance} not ready after {timeout}s")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


async def push_copy_items(url: str, n: int) -> None:
    """Push `n` items `item-<i>` to the input of the copy workflow (tests/integration/kafka/apps.py)."""
    backend = KafkaBackend.from_url(url, workflow_name=copy_workflow.name, env={})
    q = backend.make_queue(Item, ["input"])
    try:
        for start in range(0, n, 500):
            await asyncio.gather(*(q.push(f"item-{i}", Item(i, f"text {i}")) for i in range(start, min(start + 500, n))))
    finally:
        backend.close()


def read_topic(bootstrap: str, topic: str, timeout: float = 30, isolation: str = "read_committed") -> list[Any]:
    """Every record of `topic` a read_committed (or `isolation`) consumer sees, from the beginning to the current end."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(meta.partitions)
        ends = {}
        for p in parts:
            low, high = watermarks(c, topic, p)
            if high > low:
                ends[p] = high
        out: list[Any] = []
        if not ends:
            return out
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        out.extend(consume_to_end(c, ends, time.monotonic() + timeout))
        if ends:
            raise TimeoutError(f"reading {topic}: partitions {sorted(ends)} did not reach their end")
        return out
    finally:
        c.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "isolation.level": "read_committed"})
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        return {p: watermarks(c, topic, p)[1] for p in parts}
    finally:
        c.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed"})
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        return {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in parts], 10)}
    finally:
        c.close()


def unconsumed(bootstrap: str, group: str, topic: str) -> int:
    """Data records of `topic` at or after `group`'s committed offsets (read_committed).

    Zero means the group has committed everything; comparing offsets with the end offsets would
    not do, since a transactional writer leaves a commit marker after its last record.
    """
    committed = committed_offsets(bootstrap, group, topic)
    return sum(1 for m in read_topic(bootstrap, topic) if m.offset() >= committed.get(m.partition(), 0))


def wait_stable(bootstrap: str, group: str, members: int, timeout: float = 60) -> None:
    """Until `group` is Stable with `members` members (each with an assignment).

    On noida-db the tests call this between kills: it does not expire a killed member that is
    replaced while its group is rebalancing, so a rebalance must finish before the next kill -9.
    """
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    state: Any = None
    while time.monotonic() < deadline:
        d = admin.describe_consumer_groups([group])[group].result()
        state = (d.state, len(d.members))
        if d.state == ConsumerGroupState.STABLE and len(d.members) == members:
            return
        time.sleep(0.1)
    d = admin.describe_consumer_groups([group])[group].result()
    seen = [(m.group_instance_id, m.member_id[-6:]) for m in d.members]
    raise TimeoutError(f"consumer group {group} not stable with {members} members after {timeout}s: {state} {seen}")
