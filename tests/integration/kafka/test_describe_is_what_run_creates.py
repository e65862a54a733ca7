"""`pipeteer describe APP --backend URL` prints the topics `pipeteer run APP --backend URL` creates:
the same names, partitions, replication factor and configs, checked on a real broker."""

from __future__ import annotations

import re

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from pipeteer.cli import main
from pipeteer.plan import Plan
from pipeteer.runtime.connect import connect
from topologies.perspective_correction import app

APP = "topologies.perspective_correction:app"
LINE = re.compile(r"^  (\S+) \[([a-z-]+)\] partitions=(\d+) replication\.factor=(\d+)((?: \S+=\S+)*)$")


def described(url: str, capsys: pytest.CaptureFixture[str]) -> dict[str, tuple[int, int, dict[str, str]]]:
    assert main(["describe", APP, "--backend", url]) == 0
    text = capsys.readouterr().out
    assert "\nprofile  local " in text
    topics = text[text.index("\ntopics:\n") :].splitlines()[2:]
    out = {}
    for line in topics:
        m = LINE.match(line)
        assert m, line
        config = dict(kv.split("=", 1) for kv in m.group(5).split())
        out[m.group(1)] = (int(m.group(3)), int(m.group(4)), config)
    return out


def created(bootstrap: str, names: list[str]) -> dict[str, tuple[int, int, dict[str, str]]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(timeout=10).topics
    configs = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names])
    out = {}
    for res, fut in configs.items():
        partitions = meta[res.name].partitions
        replicas = {len(p.replicas) for p in partitions.values()}
        assert len(replicas) == 1, (res.name, replicas)
        out[res.name] = (len(partitions), replicas.pop(), {k: v.value for k, v in fut.result().items()})
    return out


def test_describe_prints_the_topics_the_backend_creates(
    kafka_bootstrap: str, kafka_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"kafka://{kafka_bootstrap}?prefix={kafka_prefix}"  # the defaults: the 'local' topic profile
    want = described(url, capsys)
    queues = connect(app, url)
    backend = queues.backend
    try:
        for stage in Plan.of(app.workflow).stages:  # what each stage's engine creates when it starts
            backend.ensure_topics_sync(backend.known_topics(), extra_stage=stage.path)
    finally:
        backend.close()
    mine = sorted(
        n
        for n in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
        if n.startswith(kafka_prefix + ".")
    )
    assert mine == sorted(want)  # every topic described is created, and no other
    have = created(kafka_bootstrap, mine)
    for name, (partitions, replication, config) in want.items():
        got_partitions, got_replication, got_config = have[name]
        assert (got_partitions, got_replication) == (partitions, replication), name
        assert {k: got_config[k] for k in config} == config, name
    # the 'local' profile: one broker will do (the schemas topic: one partition, whatever the profile)
    assert {(p, r) for n, (p, r, _) in want.items() if not n.endswith("._schemas")} == {(4, 1)}
    assert want[f"{kafka_prefix}.{app.workflow.name}._schemas"][:2] == (1, 1)
    assert {c["cleanup.policy"] for n, (_, _, c) in want.items() if n.endswith(".pending")} == {"compact"}
