"""Shipping version 2 while version 1 runs, on Kafka: every stage its own `pipeteer run --stage`
process, each replaced in turn mid-stream by a process of another version under a new instance name
(as a Deployment's new pod is), then rolled back, while items are pushed and a person decides tasks
over HTTP. Old readers read the new records and new readers the old ones (writer schemas come from the
workflow's schemas topic): every item comes out exactly once in read_committed output, nothing is
dead-lettered or held, every pending task is kept and completed, and a stopped instance hands its
partitions over at once (each stage unready only while its new process starts and joins).

An incompatible version (3) is refused before it serves anything."""

from __future__ import annotations

import collections
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from pipeteer.spec import names
from tests.integration.kafka.procs import backend_url, read_topic
from tests.integration.rollout import STAGES, Pusher, Rollout, assert_version_3_refused, rolled, wait_for
from tests.kafka_broker import Broker

pytestmark = pytest.mark.slow

N = 1000
WF = "rollout"


def output_keys(bootstrap: str, prefix: str) -> list[str]:
    return [m.key().decode() for m in read_topic(bootstrap, names.queue_topic(WF, ("output",), prefix))]


@pytest.mark.parametrize("kill,registry", [(False, False), (True, False), (False, True)],
                         ids=["sigterm", "kill9", "registry"])
def test_a_rolling_upgrade_and_rollback_lose_nothing(
    real_kafka: Broker, kafka_prefix: str, tmp_path: Path, kill: bool, registry: bool, request: pytest.FixtureRequest
) -> None:
    """(With `registry`, records carry a real schema registry's ids, and old readers fetch the new
    writer schemas from it by id.)"""
    bootstrap = real_kafka.bootstrap
    options = {}
    if registry:
        options["schema_registry"] = quote(request.getfixturevalue("schema_registry").url, safe="")
    url = backend_url(real_kafka, kafka_prefix, **options)
    finished = lambda: len(output_keys(bootstrap, kafka_prefix))  # noqa: E731
    with rolled(url, tmp_path, N, kill=kill, finished=finished) as (rollout, person):
        ready = {s: httpx.get(f"{rollout.procs[s].base}/readyz", timeout=10).json() for s in STAGES}
    keys = output_keys(bootstrap, kafka_prefix)
    twice = [k for k, n in collections.Counter(keys).items() if n > 1]
    assert not twice and sorted(keys) == sorted(f"item-{i}" for i in range(N)), twice[:5]
    for s in STAGES:
        assert read_topic(bootstrap, names.dead_letter_topic(WF, (s,), kafka_prefix)) == [], s
        assert ready[s]["ready"] and "held" not in ready[s] and "unknown_writer_schemas" not in ready[s], ready[s]
    if registry:
        assert all(m.value()[:1] == b"\x00" for m in read_topic(bootstrap, names.queue_topic(WF, ("output",), kafka_prefix)))
    else:
        assert_outputs_readable(url, kafka_prefix, bootstrap)
    assert person.refused == []
    assert set(person.decided.values()) == {1, 2}  # tasks decided by both versions
    steps = [(s.stage, s.old, s.new, round(s.unready, 1)) for s in rollout.steps]
    print(f"\nKafka rollout ({'kill -9' if kill else 'SIGTERM'}): stage, from, to, seconds without a ready process: {steps}")
    # SIGTERM: the old instance leaves its group at once (no session timeout to wait out); after a
    # kill -9 the group waits for the session timeout the tests set (6 s), which readiness does not show
    assert max(s.unready for s in rollout.steps) < 20, steps


def assert_outputs_readable(url: str, prefix: str, bootstrap: str) -> None:
    """This (version 1) process reads every output, those version 2 wrote included, from the schemas topic."""
    from pipeteer.codec import codec_for
    from pipeteer.queues.kafka import KafkaBackend
    from tests.apps.rollout import Out

    backend = KafkaBackend.from_url(url, workflow_name=WF, env={})
    backend.schema_catalog()
    try:
        codec = codec_for(Out)
        values = [codec.decode(m.value()) for m in read_topic(bootstrap, names.queue_topic(WF, ("output",), prefix))]
    finally:
        backend.close()
    assert all(v.total == 2 * v.n and v.ok for v in values)
    assert len(codec.writer_schemas) == 2  # both versions' Out


@pytest.mark.parametrize("registry", [False, True], ids=["schemas-topic", "registry"])
def test_an_incompatible_version_is_refused_before_it_serves(
    real_kafka: Broker, kafka_prefix: str, tmp_path: Path, registry: bool, request: pytest.FixtureRequest
) -> None:
    options = {}
    if registry:
        options["schema_registry"] = quote(request.getfixturevalue("schema_registry").url, safe="")
    url = backend_url(real_kafka, kafka_prefix, **options)
    rollout = Rollout(url, tmp_path)
    try:
        rollout.start_all(1)
        Pusher(url, 20, rate=1000).run()
        assert_version_3_refused(url)
        h = rollout.procs["h"]
        wait_for(lambda: len(httpx.get(f"{h.base}/h/tasks", timeout=10).json()) == 20, 60, "20 tasks in h")
    finally:
        rollout.stop_all()
