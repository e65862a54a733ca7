"""Crashes the noida-db test broker cannot take, on Apache Kafka (skipped on noida-db).

- Static members (named instances) started together, all killed with SIGKILL together, and all
  restarted together, twice: noida-db may hand one static member another's partitions when they
  rejoin one after the other, or lose a JoinGroup when they join at once.
- An instance killed for good (never restarted) in the middle of a transaction: Kafka aborts its
  open transaction after `transaction.timeout.ms` (noida-db never does), and its partitions move
  to the surviving instance after the session timeout (noida-db never expires a static member).

Either way every input gives exactly one output in read_committed output, and the stage's
committed input offsets reach the input's end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from confluent_kafka import IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from pipeteer.spec import names
from tests.integration.kafka.procs import (
    StageProcess,
    backend_url,
    push_copy_items,
    read_topic,
    unconsumed,
    wait_stable,
)
from tests.kafka_broker import Broker

pytestmark = pytest.mark.slow

APP = "tests.integration.kafka.apps:copy_app"
TRANSACTION_TIMEOUT_MS = 10_000
SESSION_TIMEOUT_MS = 6_000


def topics(prefix: str) -> tuple[str, str, str]:
    """The copy stage's input topic, output topic and consumer group."""
    return (
        names.queue_topic("copy", ["input"], prefix),
        names.queue_topic("copy", ["output"], prefix),
        names.consumer_group("copy", ["copy"], prefix),
    )


def wait_outputs(bootstrap: str, topic: str, n: int, timeout: float = 180) -> None:
    """Until `topic` has `n` distinct items in read_committed output (or `timeout` passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len({m.key() for m in read_topic(bootstrap, topic)}) < n:
        time.sleep(0.1)


def assert_exactly_once(bootstrap: str, prefix: str, n: int) -> None:
    in_topic, out_topic, group = topics(prefix)
    keys = [m.key().decode() for m in read_topic(bootstrap, out_topic)]
    assert len(set(keys)) == n, f"{n - len(set(keys))} of {n} items lost"
    assert len(keys) == n, f"{len(keys) - n} duplicate outputs"
    assert set(keys) == {f"item-{i}" for i in range(n)}
    deadline = time.monotonic() + 20  # the last commit may be a moment behind the outputs
    while unconsumed(bootstrap, group, in_topic) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert unconsumed(bootstrap, group, in_topic) == 0, "the stage left input uncommitted"


def assignment(bootstrap: str, group: str) -> dict[str, set[int]]:
    """The group's members by instance name, with the partitions each is assigned."""
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the answer is in
    d = admin.describe_consumer_groups([group])[group].result(timeout=30)
    return {m.group_instance_id: {tp.partition for tp in m.assignment.topic_partitions} for m in d.members}


def open_transactions(bootstrap: str, topic: str, partitions: set[int]) -> set[int]:
    """The partitions of `topic` with records of a transaction still open (last stable offset < end)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def ends(level: IsolationLevel) -> dict[int, int]:
        request = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}
        futures = admin.list_offsets(request, isolation_level=level, request_timeout=10)
        return {tp.partition: f.result().offset for tp, f in futures.items()}

    stable, end = ends(IsolationLevel.READ_COMMITTED), ends(IsolationLevel.READ_UNCOMMITTED)
    return {p for p in partitions if stable[p] < end[p]}


def test_static_members_restarted_together(real_kafka: Broker, kafka_prefix: str, tmp_path: Path) -> None:
    n = 6000
    bootstrap = real_kafka.bootstrap
    # static members (as a StatefulSet's pods would be: restarted under their own names)
    url = backend_url(real_kafka, kafka_prefix, commit_records=100, commit_interval_ms=200, static_membership="true")
    asyncio.run(push_copy_items(url, n))
    _, out_topic, group = topics(kafka_prefix)
    procs = [StageProcess(APP, "copy", url, f"copy-{i}", tmp_path, env={"SLOW_SECONDS": "0.005"}) for i in (1, 2, 3)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.wait_ready()
        for at in (n // 4, n // 2):
            wait_outputs(bootstrap, out_topic, at)
            for p in procs:
                p.kill9()
            for p in procs:
                p.start()
            for p in procs:
                p.wait_ready()
        wait_outputs(bootstrap, out_topic, n)
        assert all(p.starts == 3 for p in procs)
        assert_exactly_once(bootstrap, kafka_prefix, n)
        # every instance is back in the group under its own name, and each partition has one owner
        wait_stable(bootstrap, group, len(procs))
        owners = assignment(bootstrap, group)
        assert set(owners) == {p.instance for p in procs}
        assert sorted(q for qs in owners.values() for q in qs) == [0, 1, 2, 3]
    finally:
        for p in procs:
            p.stop()


def test_instance_killed_for_good(real_kafka: Broker, kafka_prefix: str, tmp_path: Path) -> None:
    n = 6000
    bootstrap = real_kafka.bootstrap
    # Long transactions (commits every 5 s), so the killed instance dies with one open; set through
    # the client-property passthrough, as a deployment would.
    # (static members, named as the assertions below find them: the dead one is expired all the same)
    url = backend_url(real_kafka, kafka_prefix, commit_records=100_000, commit_interval_ms=5000,
                      static_membership="true")
    env = {
        "SLOW_SECONDS": "0.004",  # ~12 s of work for the instance to kill: it is killed mid-stream
        "PIPETEER_KAFKA_TRANSACTION_TIMEOUT_MS": str(TRANSACTION_TIMEOUT_MS),
        "PIPETEER_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
    }
    asyncio.run(push_copy_items(url, n))
    _, out_topic, group = topics(kafka_prefix)
    doomed, survivor = (StageProcess(APP, "copy", url, f"copy-{i}", tmp_path, env=env) for i in (1, 2))
    try:
        doomed.start()
        survivor.start()
        doomed.wait_ready()
        survivor.wait_ready()
        wait_stable(bootstrap, group, 2)
        mine = assignment(bootstrap, group)[doomed.instance]
        assert mine, "the instance to kill owns no partition"
        # Kill it while a transaction of its own has outputs in the partitions it owns (an id keeps
        # its partition number from input to output, so no one else writes there). It is frozen
        # (SIGSTOP) first, and a commit it had already asked for has a second to complete: a
        # transaction still open after that can only end by Kafka's timeout.
        assert doomed.proc is not None
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, f"{doomed.instance} left no transaction open on {mine} in 60 s"
            os.kill(doomed.proc.pid, signal.SIGSTOP)
            time.sleep(1.0)
            if open_transactions(bootstrap, out_topic, mine):
                break
            os.kill(doomed.proc.pid, signal.SIGCONT)
            time.sleep(0.3)
        doomed.kill9()
        wait_outputs(bootstrap, out_topic, n)
        assert doomed.starts == 1 and not doomed.alive()
        assert_exactly_once(bootstrap, kafka_prefix, n)
        # Kafka aborted the dead instance's transaction: its outputs are in the log, never committed
        uncommitted = read_topic(bootstrap, out_topic, isolation="read_uncommitted")
        assert len(uncommitted) > n
        assert not open_transactions(bootstrap, out_topic, {0, 1, 2, 3})
        wait_stable(bootstrap, group, 1)
        assert assignment(bootstrap, group) == {survivor.instance: {0, 1, 2, 3}}
    finally:
        doomed.stop()
        survivor.stop()
